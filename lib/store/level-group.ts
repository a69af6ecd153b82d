// The levels of one request on Redis (its subject, its organization, a shared route budget): one
// batch item per level, joined so the script decides them all or nothing in one call, and one
// answer once every level's line is in.
import { StoreReplyError } from '../errors.js'
import type { StoreKeys } from '../keys.js'
import type { TierLimits } from '../tiers.js'
import { readCrossings, readOutcome, releasingArg, type LineCrossings, type TermsWriter } from './admit-protocol.js'
import type { BatchItem } from './admit-batcher.js'
import type { AdmitOutcome } from './decision.js'
import type { AdmitRequest } from './types.js'

/** One level as the script takes it: where it counts, what it is held to, whether it keeps a usage record. */
export interface LevelTerms {
  readonly keys: StoreKeys
  readonly limits: TierLimits
  readonly bucketQuota: number
  readonly keepUsage: boolean
}

/** The levels of a request, the subject's first. */
export function levelTermsOf (request: AdmitRequest): LevelTerms[] {
  const own: LevelTerms = { keys: request.keys, limits: request.limits, bucketQuota: request.bucketQuota ?? Infinity, keepUsage: request.keepUsage === true }
  return [own, ...(request.levels ?? []).map(level => ({ keys: level.keys, limits: level.limits, bucketQuota: Infinity, keepUsage: level.scope === 'organization' }))]
}

/** One level's answer: what it counted, and the quota thresholds it crossed. */
export interface LevelAnswer {
  readonly outcome: AdmitOutcome
  readonly crossed: LineCrossings | undefined
}

/** What a group needs of its store. */
export interface GroupOwner {
  /** Lease ids given back since the last call for these leases, taken to ride along (undefined: none). */
  takeUnsentReleases: (keys: StoreKeys) => string[] | undefined
  /** Releases that rode along in a call that failed. */
  releasesFailed: (keys: StoreKeys, ids: readonly string[], err: unknown) => void
  release: (keys: StoreKeys, leaseId: string) => void
}

/** One level's item of a group: its answer goes to the group, by index. */
class LevelItem implements BatchItem {
  readonly counters: string
  readonly leases: string
  readonly month: string
  readonly terms: string
  readonly leaseId: string
  readonly releasing: string
  readonly joinsNext: boolean

  constructor (
    private readonly group: LevelGroup,
    private readonly index: number,
    readonly keys: StoreKeys,
    terms: string,
    leaseId: string,
    /** Lease ids that ride along (given back first), if any. */
    readonly released: string[] | undefined,
    joinsNext: boolean,
    readonly clock: number
  ) {
    this.counters = keys.counters
    this.leases = keys.leases
    this.month = keys.month
    this.terms = terms
    this.leaseId = leaseId
    this.releasing = released === undefined ? '' : releasingArg(released)
    this.joinsNext = joinsNext
  }

  resolve (line: string): void {
    this.group.line(this.index, line)
  }

  reject (err: unknown): void {
    this.group.itemFailed(this, err)
  }
}

export class LevelGroup {
  readonly items: LevelItem[]
  private readonly answers: LevelAnswer[] = []
  private waiting: number
  private failed = false

  constructor (
    readonly levels: readonly LevelTerms[],
    private readonly request: AdmitRequest,
    terms: TermsWriter,
    clock: number,
    private readonly owner: GroupOwner,
    /** Every level's answer, in order; or the error of the group. */
    private readonly answered: (answers: LevelAnswer[]) => void,
    private readonly fail: (err: unknown) => void
  ) {
    const peek = request.peek === true
    const last = levels.length - 1
    this.waiting = levels.length
    this.items = levels.map((level, i) => new LevelItem(this, i, level.keys,
      terms.terms(level.limits, request.cost, level.bucketQuota, peek, i < last, level.keepUsage), request.leaseId,
      owner.takeUnsentReleases(level.keys), i < last, clock))
  }

  line (i: number, line: string): void {
    const outcome = readOutcome(line)
    if (outcome === undefined) {
      this.error(new StoreReplyError(line))
      return
    }
    this.answers[i] = { outcome, crossed: readCrossings(line) }
    if (--this.waiting > 0) return
    if (!this.failed) {
      this.answered(this.answers)
      return
    }
    // The request went on without this answer (failMode): leases granted now would never go back.
    const { leaseId } = this.request
    if (leaseId !== '' && this.answers.every(a => a.outcome[0] === 0)) {
      this.levels.forEach(level => { if (level.limits.concurrentRequests !== Infinity) this.owner.release(level.keys, leaseId) })
    }
  }

  itemFailed (item: LevelItem, err: unknown): void {
    if (item.released !== undefined) this.owner.releasesFailed(item.keys, item.released, err)
    this.error(err)
  }

  private error (err: unknown): void {
    if (this.failed) return
    this.failed = true
    this.fail(err)
  }
}
