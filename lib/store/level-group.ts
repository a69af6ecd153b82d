// The levels of one request on Redis (its subject, its organization, a shared route budget): one
// batch item per level, joined so the script decides them all or nothing in one call, and one
// answer once every level's line is in.
import { StoreReplyError } from '../errors.js'
import type { StoreKeys } from '../keys.js'
import type { TierLimits } from '../tiers.js'
import { readOutcome, releasingArg, type TermsWriter } from './admit-protocol.js'
import type { BatchItem } from './admit-batcher.js'
import type { AdmitOutcome } from './decision.js'
import type { AdmitRequest } from './types.js'

/** One level as the script takes it: where it counts and what it is held to. */
export interface LevelTerms {
  readonly keys: StoreKeys
  readonly limits: TierLimits
  readonly bucketQuota: number
}

/** The levels of a request, the subject's first. */
export function levelTermsOf (request: AdmitRequest): LevelTerms[] {
  const own: LevelTerms = { keys: request.keys, limits: request.limits, bucketQuota: request.bucketQuota ?? Infinity }
  return [own, ...(request.levels ?? []).map(level => ({ keys: level.keys, limits: level.limits, bucketQuota: Infinity }))]
}

/** What a group needs of its store. */
export interface GroupOwner {
  /** Lease ids given back since the last call for these leases, taken to ride along (undefined: none). */
  takeUnsentReleases: (keys: StoreKeys) => string[] | undefined
  /** Releases that rode along in a call that failed. */
  releasesFailed: (keys: StoreKeys, ids: readonly string[], err: unknown) => void
  release: (keys: StoreKeys, leaseId: string) => void
}

export class LevelGroup {
  readonly items: BatchItem[]
  private readonly outcomes: AdmitOutcome[] = []
  private waiting: number
  private failed = false

  constructor (
    readonly levels: readonly LevelTerms[],
    private readonly request: AdmitRequest,
    terms: TermsWriter,
    clock: number,
    private readonly owner: GroupOwner,
    /** Every level's outcome, in order; or the error of the group. */
    private readonly answered: (outcomes: AdmitOutcome[]) => void,
    private readonly fail: (err: unknown) => void
  ) {
    const peek = request.peek === true
    this.waiting = levels.length
    this.items = levels.map((level, i) => {
      const released = owner.takeUnsentReleases(level.keys)
      return {
        counters: level.keys.counters,
        leases: level.keys.leases,
        month: level.keys.month,
        terms: terms.terms(level.limits, request.cost, level.bucketQuota, peek, i < levels.length - 1),
        leaseId: request.leaseId,
        releasing: released === undefined ? '' : releasingArg(released),
        joinsNext: i < levels.length - 1,
        clock,
        resolve: (line: string) => this.line(i, line),
        reject: (err: unknown) => {
          if (released !== undefined) owner.releasesFailed(level.keys, released, err)
          this.error(err)
        }
      }
    })
  }

  private line (i: number, line: string): void {
    const outcome = readOutcome(line)
    if (outcome === undefined) {
      this.error(new StoreReplyError(line))
      return
    }
    this.outcomes[i] = outcome
    if (--this.waiting > 0) return
    if (!this.failed) {
      this.answered(this.outcomes)
      return
    }
    // The request went on without this answer (failMode): leases granted now would never go back.
    const { leaseId } = this.request
    if (leaseId !== '' && this.outcomes.every(o => o[0] === 0)) {
      this.levels.forEach((level, at) => { if (level.limits.concurrentRequests !== Infinity && this.outcomes[at] !== undefined) this.owner.release(level.keys, leaseId) })
    }
  }

  private error (err: unknown): void {
    if (this.failed) return
    this.failed = true
    this.fail(err)
  }
}
