// In-process store with the same semantics as the Redis script (lib/lua/admit-batch.lua), step for step,
// so one conformance suite holds both to the same answers; both turn what they counted into a decision
// with decision.ts. For one process only: counters are not shared between instances. Unlike Redis it has no memory of its own to fill: the number of counters
// it keeps is bounded, the least recently used going first.
import { KEY_LAYOUT_VERSION, type StoreKeys } from '../keys.js'
import { MonthCache } from './calendar.js'
import { combineLevels, crossingsOf, decisionOf, type AdmitOutcome } from './decision.js'
import type { LineCrossings } from './admit-protocol.js'
import type { UsageDescription } from './usage-descriptions.js'
import type { TierLimits } from '../tiers.js'
import { HOUR_MS, MINUTE_MS, type AdjustRequest, type Adjusted, type AdmitRequest, type Decision, type DecisionSink, type DirectAdmit, type RateLimitStore, type Usage, type UsageRecord, type WindowSettings } from './types.js'
import { recordsOf, type SubjectMonthUsage } from './usage-record.js'

export interface MemoryStoreOptions extends Partial<WindowSettings> {
  /** Time source in Unix ms (tests and replays); defaults to `Date.now`. */
  clock?: () => number
  /** How often expired entries are swept, in ms. */
  sweepIntervalMs?: number
  /**
   * Most counters kept (one per subject and bucket); past it the least recently used are forgotten,
   * and start afresh when they return. Default 100,000.
   */
  maxKeys?: number
}

/** Counters take about 1 KB of heap each (measured on the anonymous tier): 100,000 hold some 100 MB. */
export const DEFAULT_MAX_KEYS = 100_000

/**
 * One window's buckets and their running sum, as the script keeps them: reading the use costs one
 * number, and buckets that left the window are dropped when it has moved on.
 */
class WindowCounts {
  readonly buckets = new Map<number, number>()
  sum = 0
  /** Every bucket index is at least this (the oldest bucket still counted at the last write). */
  oldest = Infinity
  /** The newest bucket ever written. */
  newest = -Infinity

  /** The use at bucket `cur`: the sum, less the buckets that have wholly left the window. */
  used (cur: number, k: number): number {
    const first = cur - k
    if (this.oldest < first) {
      for (const [idx, n] of this.buckets) {
        if (idx < first) {
          this.buckets.delete(idx)
          this.sum -= n
        }
      }
      this.oldest = first
    }
    return this.sum
  }

  /**
   * Changes by `by` the bucket holding `at` (while it still counts), or with `at` undefined gives
   * back `-by` from the newest buckets first; never below zero, never a bucket that is not there.
   * Returns the change made.
   */
  change (cur: number, k: number, by: number, at: number | undefined): number {
    if (at !== undefined) {
      if (at < cur - k || at > cur) return 0
      const n = this.buckets.get(at)
      if (n === undefined) return 0
      const d = by < 0 ? Math.max(by, -n) : by
      this.buckets.set(at, n + d)
      this.sum += d
      return d
    }
    let left = -by
    let changed = 0
    for (let idx = cur; idx >= cur - k && left > 0; idx--) {
      const n = this.buckets.get(idx)
      if (n === undefined) continue
      const taken = Math.min(n, left)
      this.buckets.set(idx, n - taken)
      this.sum -= taken
      left -= taken
      changed -= taken
    }
    return changed
  }

  add (cur: number, k: number, cost: number): void {
    this.buckets.set(cur, (this.buckets.get(cur) ?? 0) + cost)
    this.sum += cost
    if (this.oldest > cur - k) this.oldest = cur - k
    if (this.newest < cur) this.newest = cur
  }

  /** Time (ms from `now`) until `need` units have left the window; the window's length if never. */
  waitFor (cur: number, k: number, g: number, need: number, now: number, length: number): number {
    let freed = 0
    for (let idx = cur - k; idx <= cur; idx++) {
      const n = this.buckets.get(idx)
      if (n !== undefined) {
        freed += n
        if (freed >= need) return (idx + k + 1) * g - now
      }
    }
    return length
  }

  /** Unix ms until which its newest bucket counts (0 when there is none). */
  liveUntil (k: number, g: number): number {
    return this.newest === -Infinity ? 0 : (this.newest + k + 1) * g
  }
}

interface Counters {
  readonly minute: WindowCounts
  readonly hour: WindowCounts
  /**
   * The month's count and which month it is (yyyymm); an older month counts as nothing, and 0 means
   * no month was ever counted here (as a hash without its month field: a settle never charges it).
   */
  monthId: number
  month: number
  expiresAt: number
  /** Quota alerts: per threshold, the quota it fired at in month `alertsMonth` (see quota-alerts.lua). */
  alerts?: Map<number, number>
  alertsMonth?: number
}

/** The thresholds a count going from `before` to `after` under `quota` crosses now, marked as fired. */
function crossedNow (counters: Counters, monthId: number, thresholds: readonly number[], before: number, after: number, quota: number): number[] {
  if (counters.alertsMonth !== monthId) {
    counters.alerts = new Map()
    counters.alertsMonth = monthId
  }
  const fired = counters.alerts as Map<number, number>
  const out: number[] = []
  for (const t of thresholds) {
    const mark = t * quota
    const firedAt = fired.get(t)
    if (after >= mark && after > 0 && (firedAt === undefined || (firedAt !== quota && before < mark))) {
      fired.set(t, quota)
      out.push(t)
    }
  }
  return out
}
interface Leases { readonly members: Map<string, number>, expiresAt: number }

/** One level of a request, checked and not taken yet. */
interface LevelCheck {
  readonly keys: StoreKeys
  readonly hasM: boolean
  readonly hasH: boolean
  readonly hasC: boolean
  readonly hasB: boolean
  /** The month counts in the bucket's own counters (the shared bucket). */
  readonly shared: boolean
  readonly limQ: number
  readonly limB: number
  /** The subject keeps a usage record (tenants, organizations); and whose count it is. */
  readonly keepUsage: boolean
  readonly scope: 'tenant' | 'organization'
  readonly countQ: boolean
  readonly countB: boolean
  readonly counters: Counters | undefined
  readonly monthCounters: Counters | undefined
  readonly usedQ: number
  readonly usedB: number
  readonly usedM: number
  readonly usedH: number
  readonly curM: number
  readonly curH: number
  readonly reason: number
  readonly retry: number
  readonly inFlight: number
  readonly leases: Leases | undefined
}

export class MemoryStore implements RateLimitStore, DirectAdmit {
  readonly kind = 'memory' as const
  readonly settings: WindowSettings
  /** Most counters kept; see MemoryStoreOptions. */
  readonly maxKeys: number
  private readonly clock: () => number
  /** In order of last use, the least recent first (a Map iterates in insertion order). */
  private readonly counters = new Map<string, Counters>()
  private readonly leases = new Map<string, Leases>()
  private readonly sweeper: NodeJS.Timeout
  private readonly months = new MonthCache()
  /**
   * Usage records, by month (`yyyymm`) and subject base: month counts kept past their month, for
   * `usageRetentionMonths` (dropped by the sweep), as the Redis store keeps them.
   */
  readonly usageRecords = new Map<string, Map<string, SubjectMonthUsage>>()

  constructor (options: MemoryStoreOptions = {}) {
    this.settings = {
      bucketsPerWindow: options.bucketsPerWindow ?? 20,
      leaseTtlMs: options.leaseTtlMs ?? 60_000,
      // In increasing order: a crossing lists its thresholds so, and the script stops at the first not reached.
      alertThresholds: [...(options.alertThresholds ?? [])].sort((a, b) => a - b),
      usageRetentionMonths: options.usageRetentionMonths ?? 3
    }
    this.clock = options.clock ?? Date.now
    this.maxKeys = options.maxKeys ?? DEFAULT_MAX_KEYS
    if (!Number.isInteger(this.maxKeys) || this.maxKeys < 1) throw new RangeError(`maxKeys must be a whole number >= 1, got ${this.maxKeys}`)
    // Without a sweep, ids seen once would stay in memory for the rest of the month.
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 30_000)
    this.sweeper.unref()
  }

  async admit (request: AdmitRequest): Promise<Decision> {
    return this.decision(request)
  }

  /** `admit` without a promise: `sink` hears the decision before this returns. */
  admitTo (request: AdmitRequest, sink: DecisionSink): void {
    let decision: Decision
    try {
      decision = this.decision(request)
    } catch (err) {
      sink.failed(err)
      return
    }
    sink.decided(decision)
  }

  private decision (request: AdmitRequest): Decision {
    const crossed: Array<LineCrossings | undefined> = []
    const outcomes = this.decide(request, crossed)
    const k = this.settings.bucketsPerWindow
    const bucketQuota = request.bucketQuota ?? Infinity
    const own = decisionOf(outcomes[0], request.limits, bucketQuota, k, this.months, crossingsOf('tenant', crossed[0], outcomes[0], request.limits.monthlyQuota, bucketQuota))
    const levels = request.levels
    if (levels === undefined || levels.length === 0) return own
    return combineLevels(['tenant', ...levels.map(l => l.scope)], [own, ...levels.map((level, i) => decisionOf(outcomes[i + 1], level.limits, Infinity, k, this.months,
      crossingsOf('organization', crossed[i + 1], outcomes[i + 1], level.limits.monthlyQuota, Infinity)))])
  }

  release (keys: StoreKeys, leaseId: string): void {
    const entry = this.leases.get(keys.leases)
    if (entry === undefined) return
    entry.members.delete(leaseId)
    // As in Redis, where a hash whose last field goes is gone: lease sets exist only while requests run.
    if (entry.members.size === 0) this.leases.delete(keys.leases)
  }

  async renewLeases (leases: ReadonlyArray<{ readonly keys: StoreKeys, readonly id: string }>): Promise<void> {
    const expiry = this.clock() + this.settings.leaseTtlMs
    for (const { keys, id } of leases) {
      const entry = this.leases.get(keys.leases)
      if (entry === undefined || !entry.members.has(id)) continue
      entry.members.set(id, expiry)
      entry.expiresAt = Math.max(entry.expiresAt, expiry)
    }
  }

  async usage (keys: StoreKeys): Promise<Usage> {
    const now = this.clock()
    const k = this.settings.bucketsPerWindow
    const { id: monthId, end: monthResetAt } = this.months.of(now)
    let minute = 0
    let hour = 0
    let month = 0
    const counters = this.counters.get(keys.counters)
    if (counters !== undefined && counters.expiresAt > now) {
      minute = counters.minute.used(Math.floor(now / (MINUTE_MS / k)), k)
      hour = counters.hour.used(Math.floor(now / (HOUR_MS / k)), k)
    }
    const monthCounters = this.counters.get(keys.month)
    if (monthCounters !== undefined && monthCounters.expiresAt > now && monthCounters.monthId === monthId) month = monthCounters.month
    let inFlight = 0
    for (const expiry of this.leases.get(keys.leases)?.members.values() ?? []) if (expiry > now) inFlight++
    return { now, minute, hour, month, inFlight, monthResetAt }
  }

  // Mirrors adjust-batch.lua; keep the two in step.
  async adjust (request: AdjustRequest): Promise<Adjusted> {
    const { keys, amount, reservedAt, counted } = request
    const k = this.settings.bucketsPerWindow
    const now = this.clock()
    const { id: monthId } = this.months.of(now)
    const gM = MINUTE_MS / k
    const gH = HOUR_MS / k
    const counters = this.touch(keys.counters, now)
    const at = (g: number): number | undefined => reservedAt === undefined ? undefined : Math.floor(reservedAt / g)
    let minute = 0
    let hour = 0
    if (counters !== undefined && counted.minute) minute = counters.minute.change(Math.floor(now / gM), k, amount, at(gM))
    if (counters !== undefined && counted.hour) hour = counters.hour.change(Math.floor(now / gH), k, amount, at(gH))
    // The reservation's month, while it is still the current one; a month count that is there.
    const inMonth = reservedAt === undefined || this.months.of(reservedAt).id === monthId
    const changeMonth = (c: Counters | undefined): number => {
      if (!inMonth || c === undefined || c.monthId !== monthId) return 0
      const d = amount < 0 ? Math.max(amount, -c.month) : amount
      c.month += d
      return d
    }
    const shared = keys.month === keys.counters
    const month = counted.month ? changeMonth(shared ? counters : this.touch(keys.month, now)) : 0
    const bucketMonth = !counted.bucketMonth ? 0 : shared && counted.month ? month : changeMonth(counters)
    return { now, minute, hour, month, bucketMonth }
  }

  async resetSubject (subjectBase: string): Promise<void> {
    for (const key of this.counters.keys()) if (key.startsWith(subjectBase)) this.counters.delete(key)
    for (const key of this.leases.keys()) if (key.startsWith(subjectBase)) this.leases.delete(key)
  }

  /** Who each usage record belongs to (by subject base), as the Redis store writes it in the record. */
  private readonly descriptions = new Map<string, UsageDescription>()
  /** Bucket names their keys had to encode, by subject base and encoded name. */
  private readonly bucketNames = new Map<string, string>()

  describeUsage (keys: StoreKeys, description: UsageDescription): void {
    const base = keys.month.slice(0, -'all:n'.length)
    // Bounded as the counters are: past it, names start again (records keep the ones they took).
    if (this.descriptions.size >= this.maxKeys && !this.descriptions.has(base)) {
      this.descriptions.clear()
      this.bucketNames.clear()
    }
    this.descriptions.set(base, description)
    const record = this.usageRecords.get(String(this.months.of(this.clock()).id))?.get(base)
    if (record !== undefined) Object.assign(record, { scope: description.scope, id: description.id, tier: description.tier })
    if (description.bucket !== undefined) this.bucketNames.set(base + description.bucket.encoded, description.bucket.name)
  }

  async close (): Promise<void> {
    clearInterval(this.sweeper)
    this.counters.clear()
    this.leases.clear()
  }

  /** Number of entries: counters (at most `maxKeys`) and lease sets (one per subject with requests running). */
  get size (): number {
    return this.counters.size + this.leases.size
  }

  /** Drops every expired entry. */
  sweep (): void {
    const now = this.clock()
    for (const [key, entry] of this.counters) if (entry.expiresAt <= now) this.counters.delete(key)
    for (const [key, entry] of this.leases) {
      for (const [member, expiry] of entry.members) if (expiry <= now) entry.members.delete(member)
      if (entry.expiresAt <= now || entry.members.size === 0) this.leases.delete(key)
    }
    // A month's records go once it ended more than usageRetentionMonths ago (31 days a month).
    const keepMs = (this.settings.usageRetentionMonths ?? 3) * 31 * 86_400_000
    for (const month of this.usageRecords.keys()) {
      const id = Number(month)
      const end = Date.UTC(Math.floor(id / 100), id % 100, 1)
      if (end + keepMs <= now) this.usageRecords.delete(month)
    }
  }

  /**
   * Adds a subject's counters, forgetting the least recently used when full. The forgotten subject
   * starts afresh (window and month) when it returns. Lease sets are never evicted: there is one per
   * subject with requests running, so the requests in flight bound them, and forgetting one would let
   * its subject past its concurrency limit.
   */
  private keepCounters (key: string, counters: Counters): void {
    if (this.counters.size >= this.maxKeys) this.evictLeastRecent()
    this.counters.set(key, counters)
  }

  /**
   * Forgets the least recently used hundredth of the counters. A hundredth, not one: deletions leave
   * holes at the front of a Map that every new iterator walks again until the Map compacts, so
   * evicting one at a time cost 100 µs per eviction at 100,000 keys.
   */
  private evictLeastRecent (): void {
    let left = Math.ceil(this.maxKeys / 100)
    for (const key of this.counters.keys()) {
      this.counters.delete(key)
      if (--left === 0) return
    }
  }

  /** A subject's counters under `key`, marked as the most recently used; undefined when none or expired. */
  private touch (key: string, now: number): Counters | undefined {
    const counters = this.counters.get(key)
    if (counters === undefined) return undefined
    // Taken out and put back last: the least recently used counters stay first in line for eviction.
    this.counters.delete(key)
    if (counters.expiresAt <= now) return undefined
    this.counters.set(key, counters)
    return counters
  }

  private create (key: string): Counters {
    const counters = { minute: new WindowCounts(), hour: new WindowCounts(), monthId: 0, month: 0, expiresAt: 0 }
    this.keepCounters(key, counters)
    return counters
  }

  /**
   * A request's outcome at each of its levels (the subject's first). Mirrors admit-batch.lua: every
   * level is checked before any is taken, and only a request every level admits is taken anywhere.
   */
  private decide (request: AdmitRequest, crossed: Array<LineCrossings | undefined>): AdmitOutcome[] {
    const now = this.clock()
    const { cost } = request
    const first = this.check(request.keys, request.limits, request.bucketQuota ?? Infinity, cost, now, request.keepUsage === true, 'tenant')
    const levels = request.levels
    if (levels === undefined || levels.length === 0) return [this.conclude(first, first.reason === 0, request, now, crossed, 0)]
    const checks = [first, ...levels.map(level => this.check(level.keys, level.limits, Infinity, cost, now, level.scope === 'organization', 'organization'))]
    const admitted = checks.every(c => c.reason === 0)
    return checks.map((c, i) => this.conclude(c, admitted, request, now, crossed, i))
  }

  /** A checked level's outcome: taken when the request is admitted, else as it stands. */
  private conclude (c: LevelCheck, admitted: boolean, request: AdmitRequest, now: number, crossed: Array<LineCrossings | undefined>, at: number): AdmitOutcome {
    if (!admitted) return [c.reason, Math.ceil(c.retry), now, c.hasM ? c.usedM : 0, c.hasH ? c.usedH : 0, c.usedQ, c.inFlight, c.hasB ? c.usedB : 0]
    const { cost } = request
    if (request.peek === true) {
      // What an admission would answer now; nothing is recorded and no lease is taken.
      const peekQ = c.countQ ? c.usedQ + cost : c.usedQ
      const peekB = c.countB ? c.usedB + cost : c.hasB ? peekQ : 0
      return [0, 0, now, c.hasM ? c.usedM + cost : 0, c.hasH ? c.usedH + cost : 0, peekQ, c.hasC ? c.inFlight + 1 : 0, peekB]
    }
    return this.take(c, cost, request.leaseId, now, crossed, at)
  }

  /** One level: what it holds now and whether the request fits (see admit-batch.lua's check). */
  private check (keys: StoreKeys, limits: TierLimits, limB: number, cost: number, now: number, keepUsage: boolean, scope: 'tenant' | 'organization'): LevelCheck {
    const { requestsPerMinute: limM, requestsPerHour: limH, monthlyQuota: limQ, concurrentRequests: limC } = limits
    // Which limits apply (an unlimited one is neither checked nor counted).
    const hasM = limM !== Infinity
    const hasH = limH !== Infinity
    const hasQ = limQ !== Infinity
    const hasC = limC !== Infinity
    const hasB = limB !== Infinity
    const { bucketsPerWindow: k } = this.settings
    const { id: monthId, end: monthEnd } = this.months.of(now)
    const gM = MINUTE_MS / k
    const gH = HOUR_MS / k
    const curM = Math.floor(now / gM)
    const curH = Math.floor(now / gH)

    const counters = this.touch(keys.counters, now)
    // The subject's month is counted in its shared counters; a bucket cap in the bucket's own.
    const shared = keys.month === keys.counters
    const monthCounters = shared ? counters : this.touch(keys.month, now)
    const monthOf = (c: Counters | undefined): number => c !== undefined && c.monthId === monthId ? c.month : 0
    const usedQ = monthOf(monthCounters)
    const usedB = shared ? usedQ : monthOf(counters)
    const usedM = counters === undefined || !hasM ? 0 : counters.minute.used(curM, k)
    const usedH = counters === undefined || !hasH ? 0 : counters.hour.used(curH, k)

    let reason = 0
    let retry = 0
    if ((hasQ && usedQ + cost > limQ) || (hasB && usedB + cost > limB)) {
      reason = 3
      retry = monthEnd - now
    }
    if (hasH && usedH + cost > limH) {
      if (reason === 0) reason = 1
      retry = Math.max(retry, counters === undefined ? HOUR_MS : counters.hour.waitFor(curH, k, gH, usedH + cost - limH, now, HOUR_MS))
    }
    if (hasM && usedM + cost > limM) {
      if (reason === 0) reason = 1
      retry = Math.max(retry, counters === undefined ? MINUTE_MS : counters.minute.waitFor(curM, k, gM, usedM + cost - limM, now, MINUTE_MS))
    }

    let inFlight = 0
    const leases = this.leases.get(keys.leases)
    if (hasC) {
      inFlight = leases?.members.size ?? 0
      if (leases !== undefined && inFlight + 1 > limC) {
        // Only a full set needs its expired leases (crashed processes) dropped.
        for (const [member, expiry] of leases.members) if (expiry <= now) leases.members.delete(member)
        inFlight = leases.members.size
      }
      if (inFlight + 1 > limC) {
        if (reason === 0) reason = 2
        let w = 1000
        if (leases !== undefined && leases.members.size > 0) w = Math.min(w, Math.min(...leases.members.values()) - now)
        retry = Math.max(retry, w)
      }
    }
    return {
      keys,
      hasM,
      hasH,
      hasC,
      hasB,
      shared,
      limQ,
      limB,
      keepUsage,
      scope,
      countQ: hasQ || (hasB && shared),
      countB: hasB && !shared,
      counters,
      monthCounters,
      usedQ,
      usedB,
      usedM,
      usedH,
      curM,
      curH,
      reason,
      retry,
      inFlight,
      leases
    }
  }

  /** An admitted level: every count it changes, and its lease (see admit-batch.lua's commit). */
  private take (c: LevelCheck, cost: number, leaseId: string, now: number, crossed: Array<LineCrossings | undefined>, at: number): AdmitOutcome {
    const { keys, hasM, hasH, hasC, hasB, shared, countQ, countB, curM, curH } = c
    let { counters, monthCounters, usedQ, usedB, inFlight, leases } = c
    const { bucketsPerWindow: k, leaseTtlMs } = this.settings
    const { id: monthId, end: monthEnd } = this.months.of(now)
    const gM = MINUTE_MS / k
    const gH = HOUR_MS / k
    // Whether this admission counts a month in the bucket's own counters.
    const monthHere = countB || (countQ && shared)
    if (hasM || hasH || monthHere) {
      counters ??= this.create(keys.counters)
      if (shared) monthCounters = counters
      if (hasM) counters.minute.add(curM, k, cost)
      if (hasH) counters.hour.add(curH, k, cost)
      if (countB) {
        usedB += cost
        counters.monthId = monthId
        counters.month = usedB
      }
    }
    if (countQ) {
      monthCounters ??= this.create(keys.month)
      usedQ += cost
      monthCounters.monthId = monthId
      monthCounters.month = usedQ
      if (shared) usedB = usedQ
      monthCounters.expiresAt = this.liveUntil(monthCounters, k, gM, gH, monthId, monthEnd)
    }
    if (counters !== undefined) counters.expiresAt = this.liveUntil(counters, k, gM, gH, monthId, monthEnd)
    if (c.keepUsage && (countQ || countB)) crossed[at] = this.recordUsage(c, monthId, usedQ, usedB, cost, counters, monthCounters)
    if (hasC) {
      if (leases === undefined) {
        leases = { members: new Map(), expiresAt: 0 }
        this.leases.set(keys.leases, leases)
      }
      leases.members.set(leaseId, now + leaseTtlMs)
      leases.expiresAt = now + leaseTtlMs
      inFlight += 1
    }
    return [0, 0, now, hasM ? c.usedM + cost : 0, hasH ? c.usedH + cost : 0, usedQ, inFlight, hasB ? usedB : 0]
  }

  /**
   * The subject's month into its usage record, and the quota thresholds it crossed now (see the
   * usage records and quota-alerts of admit-batch.lua). Events stay in process: no pending mark.
   */
  private recordUsage (c: LevelCheck, monthId: number, usedQ: number, usedB: number, cost: number, counters: Counters | undefined, monthCounters: Counters | undefined): LineCrossings | undefined {
    const base = c.keys.month.slice(0, -'all:n'.length)
    let month = this.usageRecords.get(String(monthId))
    if (month === undefined) {
      month = new Map()
      this.usageRecords.set(String(monthId), month)
    }
    let record = month.get(base)
    // At most `maxKeys` records a month, as many as counters: past it, new subjects keep none.
    if (record === undefined && month.size >= this.maxKeys) record = { scope: c.scope, id: base, tier: null, q: 0, quota: null, buckets: new Map() }
    if (record === undefined) {
      const described = this.descriptions.get(base)
      record = { scope: c.scope, id: base, tier: null, q: 0, quota: null, buckets: new Map(), ...(described === undefined ? {} : { scope: described.scope, id: described.id, tier: described.tier }) }
      month.set(base, record)
    }
    const thresholds = this.settings.alertThresholds ?? []
    let quota: number[] = []
    let bucket: number[] = []
    if (c.countQ) {
      record.q = usedQ
      record.quota = c.limQ === Infinity ? null : c.limQ
      if (c.limQ !== Infinity && thresholds.length > 0) quota = crossedNow(monthCounters as Counters, monthId, thresholds, usedQ - cost, usedQ, c.limQ)
    }
    if (c.countB) {
      const encoded = c.keys.counters.slice(base.length + 2, -2)
      const name = this.bucketNames.get(base + encoded) ?? encoded
      record.buckets.set(name, { used: usedB, quota: c.limB })
      if (thresholds.length > 0) bucket = crossedNow(counters as Counters, monthId, thresholds, usedB - cost, usedB, c.limB)
    }
    return quota.length === 0 && bucket.length === 0 ? undefined : { quota, bucket }
  }

  /**
   * An entry lives as long as its longest-lived count: a month counted this month lives to the
   * month's end even at 0 (a reservation of 0 that a settle charges later), as its Redis field does.
   */
  private liveUntil (counters: Counters, k: number, gM: number, gH: number, monthId: number, monthEnd: number): number {
    return Math.ceil(Math.max(counters.minute.liveUntil(k, gM), counters.hour.liveUntil(k, gH), counters.monthId === monthId ? monthEnd : 0))
  }

  // ---- usage records: month counts kept after the month ends ----

  /** Every usage record of a month (`yyyymm`) under `keyPrefix`. */
  async * usageMonth (month: string, keyPrefix: string): AsyncGenerator<UsageRecord> {
    const root = `${keyPrefix}:${KEY_LAYOUT_VERSION}:`
    for (const [base, usage] of this.usageRecords.get(month) ?? []) {
      if (base.startsWith(root)) yield * recordsOf(usage)
    }
  }
}
