// The distributed store: the admissions of one event-loop turn in one script call, against a Redis
// node (or one call per admission on a Cluster).
import { subjectBaseOf, type StoreKeys } from '../keys.js'
import { UsageDescriptions, type UsageDescription } from './usage-descriptions.js'
import { MonthCache } from './calendar.js'
import { combineLevels, crossingsOf, decisionOf } from './decision.js'
import { readCrossings, readOutcome, releasingArg, sharedTerms, TermsWriter } from './admit-protocol.js'
import { AdmitBatcher, type BatchItem } from './admit-batcher.js'
import { AdjustBatcher } from './adjust-batcher.js'
import { keySlot } from './key-slot.js'
import { admitAcrossSlots } from './cross-slot.js'
import { LevelGroup, levelTermsOf, type GroupOwner, type LevelAnswer, type LevelTerms } from './level-group.js'
import { LuaScript, type RedisClient } from './lua-script.js'
import { admitAsPromise, type AdjustRequest, type Scope, type Adjusted, type AdmitRequest, type Decision, type DecisionSink, type DirectAdmit, type RateLimitStore, type Usage, type UsageRecord, type WindowSettings } from './types.js'
import { StoreReplyError } from '../errors.js'
import { StoreUnavailableError } from './store-unavailable.js'
import { scanUsageMonth } from './usage-scan.js'

export const ADMIT_SCRIPT = new LuaScript('admit-batch')
export const USAGE_SCRIPT = new LuaScript('usage-3')
export const ADJUST_SCRIPT = new LuaScript('adjust-batch')
export const LEASE_RENEW_SCRIPT = new LuaScript('lease-renew-1')

/** How long a release waits for an admission of the same keys to ride along with. */
const RELEASE_DELAY_MS = 2

/** Releases that failed (Redis away) are retried later; beyond this many the oldest are left to expire. */
const MAX_PENDING_RELEASES = 10_000

export interface RedisStoreOptions extends Partial<WindowSettings> {
  /** An ioredis client or Cluster. The store never closes it. */
  client: RedisClient
  /**
   * Replays and tests only: use this time (Unix ms) instead of Redis TIME. In production leave it
   * unset, so every instance shares Redis's clock.
   */
  clock?: () => number
  /**
   * Longest a script call may go unanswered once sent, in ms; its decisions then fail (default: no
   * limit). Time spent in this process before the call is sent, or before its reply can be read, does
   * not count.
   */
  timeoutMs?: number
  /**
   * Decide the admissions of one event-loop turn in one script call (default true on a single
   * Redis, with or without ioredis's `enableAutoPipelining`; always off on a Cluster, where one call
   * may only touch one slot). Turn it off behind a proxy that checks slots per command.
   */
  pipeline?: boolean
}

const noop = (): void => {}

interface ItemAnswers {
  line: (item: AdmitItem, line: string) => void
  error: (item: AdmitItem, err: unknown) => void
  /** A reply that came after the item had failed (its deadline passed). */
  late: (item: AdmitItem, line: string) => void
}

/** One admission in a batch: what the script needs, and where its answer goes. */
class AdmitItem implements BatchItem {
  readonly counters: string
  readonly leases: string
  readonly month: string
  readonly leaseId: string
  readonly releasing: string
  private failed = false

  constructor (
    private readonly answers: ItemAnswers,
    readonly request: AdmitRequest,
    readonly terms: string,
    /** The lease ids this item gives back (they ride along), if any. */
    readonly released: string[] | undefined,
    readonly clock: number,
    readonly sink: DecisionSink
  ) {
    this.counters = request.keys.counters
    this.leases = request.keys.leases
    this.month = request.keys.month
    this.leaseId = request.leaseId
    this.releasing = released === undefined ? '' : releasingArg(released)
  }

  resolve (line: string): void {
    if (this.failed) this.answers.late(this, line)
    else this.answers.line(this, line)
  }

  reject (err: unknown): void {
    this.failed = true
    this.answers.error(this, err)
  }
}

export class RedisStore implements RateLimitStore, DirectAdmit {
  readonly kind = 'redis' as const
  readonly client: RedisClient
  readonly settings: WindowSettings
  private readonly clock: (() => number) | undefined
  private readonly isCluster: boolean
  private readonly batcher: AdmitBatcher
  private readonly adjustments: AdjustBatcher
  private readonly months = new MonthCache()
  private readonly termsWriter = new TermsWriter()
  /** Cluster slots of keys seen (the limiter reuses one StoreKeys object per subject and bucket). */
  private readonly slots = new WeakMap<StoreKeys, number>()
  /** Releases not sent yet, by leases key: they wait for the next admission of those keys. */
  private readonly unsent = new Map<string, { readonly keys: StoreKeys, readonly ids: string[] }>()
  private releaseTimer: NodeJS.Timeout | undefined
  /** Who each usage record belongs to, written in batches. */
  private readonly descriptions: UsageDescriptions
  /** Releases that failed (Redis away), sent again once it answers. */
  private pendingReleases: Array<{ keys: StoreKeys, id: string }> = []

  constructor (options: RedisStoreOptions) {
    this.client = options.client
    this.settings = {
      bucketsPerWindow: options.bucketsPerWindow ?? 20,
      leaseTtlMs: options.leaseTtlMs ?? 60_000,
      // In increasing order: a crossing lists its thresholds so, and the script stops at the first not reached.
      alertThresholds: [...(options.alertThresholds ?? [])].sort((a, b) => a - b),
      usageRetentionMonths: options.usageRetentionMonths ?? 3
    }
    this.clock = options.clock
    // Never on a Cluster: one call may only touch one slot.
    const isCluster = this.isCluster = 'nodes' in this.client
    this.descriptions = new UsageDescriptions(this.client)
    this.batcher = new AdmitBatcher(this.client, ADMIT_SCRIPT, !isCluster && (options.pipeline ?? true), this.sharedTerms, options.timeoutMs)
    this.adjustments = new AdjustBatcher(this.client, ADJUST_SCRIPT, !isCluster && (options.pipeline ?? true), this.settings.bucketsPerWindow, this.clock)
    // Releases that failed during an outage go out as soon as the connection is back.
    this.client.on('ready', this.onReady)
  }

  private readonly onReady = (): void => {
    if (this.pendingReleases.length > 0) this.retryReleases()
  }

  admit (request: AdmitRequest): Promise<Decision> {
    return admitAsPromise(this, request)
  }

  /** `admit` without a promise: the batch's answer goes straight to `sink`. */
  admitTo (request: AdmitRequest, sink: DecisionSink): void {
    if (request.levels !== undefined && request.levels.length > 0) {
      this.admitLevels(request, sink)
      return
    }
    const { keys } = request
    // Leases given back since the last call for these keys ride along: one item, not two.
    const releasing = this.unsent.get(keys.leases)?.ids
    if (releasing !== undefined) this.unsent.delete(keys.leases)
    this.batcher.send(new AdmitItem(this.answers, request, this.termsWriter.terms(request.limits, request.cost, request.bucketQuota, request.peek === true, false, request.keepUsage === true), releasing, this.batchClock(), sink))
  }

  /**
   * A request with levels above its subject: one call deciding them all, or on a Cluster, when a
   * level lives in another slot, reservations first (see cross-slot.ts).
   */
  private admitLevels (request: AdmitRequest, sink: DecisionSink): void {
    const levels = levelTermsOf(request)
    if (this.isCluster) {
      const slot = this.slotOf(request.keys)
      const near: number[] = []
      const far: number[] = []
      levels.forEach((level, at) => (this.slotOf(level.keys) === slot ? near : far).push(at))
      if (far.length > 0) {
        admitAcrossSlots(this.crossSlot, request, levels, near, far, sink)
        return
      }
    }
    this.sendLevels(levels, request, outcomes => {
      let decision: Decision
      try {
        decision = this.levelsDecision(request, levels, levels.map((_, at) => at), outcomes)
      } catch (err) {
        sink.failed(err)
        return
      }
      sink.decided(decision)
    }, err => sink.failed(err))
  }

  private sendLevels (levels: readonly LevelTerms[], request: AdmitRequest, answered: (answers: LevelAnswer[]) => void, fail: (err: unknown) => void): void {
    const group = new LevelGroup(levels, request, this.termsWriter, this.batchClock(), this.groupOwner, outcomes => {
      if (this.pendingReleases.length > 0) this.retryReleases()
      answered(outcomes)
    }, fail)
    this.batcher.sendGroup(group.items)
  }

  /** The decision over the levels at `decided` (the subject is level 0; a level never asked is left out). */
  private levelsDecision (request: AdmitRequest, levels: readonly LevelTerms[], decided: readonly number[], answers: readonly LevelAnswer[]): Decision {
    const k = this.settings.bucketsPerWindow
    const scopes: Scope[] = decided.map(at => at === 0 ? 'tenant' : (request.levels as NonNullable<AdmitRequest['levels']>)[at - 1].scope)
    const decisions = decided.map((at, i) => {
      const { outcome, crossed } = answers[at]
      const { limits, bucketQuota } = levels[at]
      const scope = scopes[i] === 'organization' ? 'organization' : 'tenant'
      return decisionOf(outcome, limits, bucketQuota, k, this.months, crossingsOf(scope, crossed, outcome, limits.monthlyQuota, bucketQuota))
    })
    return combineLevels(scopes, decisions)
  }

  private readonly groupOwner: GroupOwner = {
    takeUnsentReleases: keys => {
      const ids = this.unsent.get(keys.leases)?.ids
      if (ids !== undefined) this.unsent.delete(keys.leases)
      return ids
    },
    releasesFailed: (keys, ids, err) => this.releasesFailed(keys, ids, err),
    release: (keys, leaseId) => this.release(keys, leaseId)
  }

  private readonly crossSlot = {
    sendLevels: (levels: readonly LevelTerms[], request: AdmitRequest, answered: (answers: LevelAnswer[]) => void, fail: (err: unknown) => void) =>
      this.sendLevels(levels, request, answered, fail),
    adjust: (request: AdjustRequest) => this.adjust(request),
    release: (keys: StoreKeys, leaseId: string) => this.release(keys, leaseId),
    decisionOf: (request: AdmitRequest, levels: readonly LevelTerms[], decided: readonly number[], answers: readonly LevelAnswer[]) =>
      this.levelsDecision(request, levels, decided, answers)
  }

  /** What every admission item does with its answer: one pair of functions per store, none per request. */
  private readonly answers: ItemAnswers = {
    line: (item, line) => {
      const outcome = readOutcome(line)
      if (outcome === undefined) {
        item.sink.failed(new StoreReplyError(line))
        return
      }
      if (this.pendingReleases.length > 0) this.retryReleases()
      const { limits } = item.request
      const bucketQuota = item.request.bucketQuota ?? Infinity
      const crossings = crossingsOf('tenant', readCrossings(line), outcome, limits.monthlyQuota, bucketQuota)
      item.sink.decided(decisionOf(outcome, limits, bucketQuota, this.settings.bucketsPerWindow, this.months, crossings))
    },
    error: (item, err) => {
      if (item.released !== undefined) this.releasesFailed(item.request.keys, item.released, err)
      item.sink.failed(err)
    },
    late: (item, line) => {
      // The request went on without this answer (failMode): a lease granted now would never be given back.
      const { leaseId, keys } = item.request
      if (leaseId !== '' && readOutcome(line)?.[0] === 0) this.release(keys, leaseId)
    }
  }

  /** What a batch shares: k, the lease lifetime and the clock (-1: Redis TIME). */
  private readonly sharedTerms = (clock: number): string =>
    sharedTerms(this.settings.bucketsPerWindow, this.settings.leaseTtlMs, clock, this.settings.alertThresholds, this.settings.usageRetentionMonths)

  /**
   * The Cluster node that holds these keys (`host:port` of its master), or '' on a single Redis: the
   * resilient store keeps a circuit breaker per node, so a failing master degrades only its tenants.
   */
  nodeOf (keys: StoreKeys): string {
    if (!('nodes' in this.client)) return ''
    return this.client.slots[this.slotOf(keys)]?.[0] ?? ''
  }

  /** The Cluster slot of a subject's keys (they share one hash tag). */
  private slotOf (keys: StoreKeys): number {
    let slot = this.slots.get(keys)
    if (slot === undefined) {
      slot = keySlot(keys.counters)
      this.slots.set(keys, slot)
    }
    return slot
  }

  /** False while the client is not connected: callers fail fast instead of queueing commands. */
  get ready (): boolean {
    return this.client.status === 'ready'
  }

  /**
   * Gives a lease back. The release waits (at most RELEASE_DELAY_MS) for the next admission of the
   * same keys and rides along with it; otherwise it goes out as an item of its own in the next
   * batch. A release that fails (Redis away) is retried once Redis answers again; the lease's expiry
   * is the last resort.
   */
  release (keys: StoreKeys, leaseId: string): void {
    const waiting = this.unsent.get(keys.leases)
    if (waiting === undefined) this.unsent.set(keys.leases, { keys, ids: [leaseId] })
    else waiting.ids.push(leaseId)
    if (this.releaseTimer === undefined) {
      this.releaseTimer = setTimeout(this.sendReleases, RELEASE_DELAY_MS)
      this.releaseTimer.unref()
    }
  }

  private readonly sendReleases = (): void => {
    this.releaseTimer = undefined
    const clock = this.batchClock()
    for (const { keys, ids } of this.unsent.values()) {
      if (!this.batcher.batching) {
        // A call of its own either way (a Cluster): a plain HDEL costs Redis far less than a script.
        // The leases hash holds nothing else, so Redis deletes it with its last lease, as the script would.
        this.client.hdel(keys.leases, ...ids).catch((err: unknown) => this.releasesFailed(keys, ids, err))
        continue
      }
      this.batcher.send({
        counters: keys.counters,
        leases: keys.leases,
        month: keys.counters, // unused by a release; any key of the subject's slot
        terms: '',
        leaseId: '',
        releasing: releasingArg(ids),
        clock,
        resolve: noop,
        reject: (err: unknown) => this.releasesFailed(keys, ids, err)
      })
    }
    this.unsent.clear()
  }

  async renewLeases (leases: ReadonlyArray<{ readonly keys: StoreKeys, readonly id: string }>): Promise<void> {
    const byKey = new Map<string, string[]>()
    for (const { keys, id } of leases) {
      const ids = byKey.get(keys.leases)
      if (ids === undefined) byKey.set(keys.leases, [id])
      else ids.push(id)
    }
    await Promise.all([...byKey].map(async ([key, ids]) => await LEASE_RENEW_SCRIPT.run(this.client, [key, this.settings.leaseTtlMs, ...ids])))
  }

  /** Releases waiting for Redis to come back. */
  get pendingReleaseCount (): number {
    return this.pendingReleases.length
  }

  /** The clock a batch item carries: -1 for Redis TIME, else the replay clock. */
  private batchClock (): number {
    return this.clock === undefined ? -1 : this.clock()
  }

  /**
   * Releases whose call failed. Only a call that failed as a whole (Redis away) sent nothing and is
   * worth retrying; an item refused on its own (a foreign value under its key) may have given them
   * back already, and would be refused again.
   */
  private releasesFailed (keys: StoreKeys, ids: readonly string[], err: unknown): void {
    if (!(err instanceof StoreReplyError)) for (const id of ids) this.keepForLater(keys, id)
  }

  private keepForLater (keys: StoreKeys, id: string): void {
    if (this.pendingReleases.length >= MAX_PENDING_RELEASES) this.pendingReleases.shift()
    this.pendingReleases.push({ keys, id })
  }

  private retryReleases (): void {
    const batch = this.pendingReleases
    this.pendingReleases = []
    for (const { keys, id } of batch) this.release(keys, id)
  }

  async usage (keys: StoreKeys): Promise<Usage> {
    const reply = await USAGE_SCRIPT.run(this.client, [
      keys.counters, keys.leases, keys.month, this.settings.bucketsPerWindow,
      this.clock === undefined ? '' : this.clock()
    ]) as number[]
    if (!Array.isArray(reply) || reply.length !== 6) throw new StoreReplyError(JSON.stringify(reply))
    return { now: reply[0], minute: reply[1], hour: reply[2], month: reply[3], inFlight: reply[4], monthResetAt: reply[5] }
  }

  /** Batched per event-loop turn on a single Redis, as admissions are. */
  adjust (request: AdjustRequest): Promise<Adjusted> {
    return this.adjustments.adjust(request)
  }

  async resetSubject (subjectBase: string): Promise<void> {
    // All of a subject's keys share one hash tag, so on a Cluster they live on one master; scanning
    // every master keeps this simple and correct through resharding.
    const nodes = 'nodes' in this.client ? this.client.nodes('master') : [this.client]
    const pattern = subjectBase.replace(/[*?[\]\\]/g, '\\$&') + '*'
    for (const node of nodes) {
      let cursor = '0'
      do {
        const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 500)
        cursor = next
        for (const key of keys) await this.client.del(key)
      } while (cursor !== '0')
    }
  }

  describeUsage (keys: StoreKeys, description: UsageDescription): void {
    const now = this.clock?.() ?? Date.now()
    const { id, end } = this.months.of(now)
    this.descriptions.describe(subjectBaseOf(keys) + 'usage:' + String(id), description, end + (this.settings.usageRetentionMonths ?? 3) * 31 * 86_400_000)
  }

  /** Every usage record of a month (`yyyymm`) under `keyPrefix`, page by page (see usage-scan.ts). */
  usageMonth (month: string, keyPrefix: string): AsyncIterable<UsageRecord> {
    return scanUsageMonth(this.client, month, keyPrefix)
  }

  async close (): Promise<void> {
    await this.descriptions.close()
    if (this.releaseTimer !== undefined) {
      clearTimeout(this.releaseTimer)
      this.sendReleases()
    }
    // Nothing will answer the decisions still waiting for a hung Redis: they fail now (failMode decides).
    this.batcher.failInFlight(new StoreUnavailableError('not-connected'))
    // The client belongs to whoever created it: only our listener goes.
    this.client.off('ready', this.onReady)
  }
}
