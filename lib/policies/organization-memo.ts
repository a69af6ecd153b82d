// forOrganization's answers, remembered until any policy changes: the request path then pays two
// map lookups and a compare per organization, and allocates nothing.
import type { TierLimits } from '../tiers.js'

/** What the request path needs about one request's organization. */
export interface OrganizationPolicy {
  /** The organization's tier; null: none (the extractor reports none and none is stored). */
  readonly tier: string | null
  readonly limits: TierLimits
}

/** One organization's answer for one reported tier. */
export interface OrganizationAnswer {
  /** The tier the extractor reported, as given (undefined: none). */
  readonly requested: string | undefined
  /** Undefined when the organization is unlimited in every dimension. */
  readonly policy: OrganizationPolicy | undefined
  /** What to remember as the organization's reported tier (NO_TIER: none). */
  readonly seenAs: string
  /** When the override the answer holds expires (Infinity: never). */
  readonly validUntil: number
}

/** Above this many organizations the memo starts again. */
const MAX_ORGANIZATIONS = 50_000

export class OrganizationMemo {
  private answers = new Map<string, OrganizationAnswer>()
  private generation = -1

  /** The answer remembered for this organization and reported tier, if still valid at `generation`. */
  get (organizationId: string, requested: string | undefined, generation: number): OrganizationAnswer | undefined {
    if (generation !== this.generation) {
      // Any change may change any organization's limits (a tier, a multiplier, an override).
      if (this.answers.size > 0) this.answers = new Map()
      this.generation = generation
      return undefined
    }
    const answer = this.answers.get(organizationId)
    if (answer === undefined || answer.requested !== requested) return undefined
    if (answer.validUntil !== Infinity && answer.validUntil <= Date.now()) return undefined
    return answer
  }

  set (organizationId: string, answer: OrganizationAnswer): void {
    if (this.answers.size >= MAX_ORGANIZATIONS && !this.answers.has(organizationId)) this.answers.clear()
    this.answers.set(organizationId, answer)
  }
}
