// A subject already over a window or its quota is answered locally until the moment the store said
// capacity frees: a flood from one client costs no Redis call. Keyed by counters and cost (a
// cheaper request may still fit), used only for the limits that were refused, a route's own monthly
// cap included (a route or tier with other limits on the same counters asks the store), dropped on
// any policy change (a raised limit applies at once).
import type { Decision } from './store/types.js'
import type { TierLimits } from './tiers.js'

const MAX_ENTRIES = 10_000

interface Entry {
  readonly until: number
  readonly at: number
  readonly decision: Decision
  /** What the rejected request was held to. */
  readonly limits: TierLimits
  readonly bucketQuota: number
}

export class RejectionCache {
  private readonly entries = new Map<string, Entry>()
  private generation = -1

  /** A still-valid rejection for this key, cost and limits, with Retry-After counted down; else undefined. */
  get (counters: string, cost: number, limits: TierLimits, bucketQuota: number, generation: number): Decision | undefined {
    if (this.entries.size === 0) return undefined
    if (generation !== this.generation) {
      this.entries.clear()
      return undefined
    }
    const key = cost === 1 ? counters : counters + '#' + cost
    const entry = this.entries.get(key)
    if (entry === undefined || entry.bucketQuota !== bucketQuota || !sameLimits(entry.limits, limits)) return undefined
    const now = Date.now()
    if (now >= entry.until) {
      this.entries.delete(key)
      return undefined
    }
    return { ...entry.decision, retryAfterMs: entry.until - now, now: entry.decision.now + (now - entry.at) }
  }

  /** Remembers a rejection that only time can lift (windows and quota; not concurrency). */
  /** Drops the entries whose counters start with `base` (one subject's, every bucket and cost). */
  forget (base: string): void {
    for (const key of this.entries.keys()) if (key.startsWith(base)) this.entries.delete(key)
  }

  set (counters: string, cost: number, limits: TierLimits, bucketQuota: number, decision: Decision, generation: number): void {
    if (decision.reason === 'concurrent_limit_exceeded' || decision.degraded === true || decision.retryAfterMs <= 0) return
    if (generation !== this.generation) {
      this.entries.clear()
      this.generation = generation
    }
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string)
    const at = Date.now()
    this.entries.set(cost === 1 ? counters : counters + '#' + cost, { until: at + decision.retryAfterMs, at, decision, limits, bucketQuota })
  }
}

function sameLimits (a: TierLimits, b: TierLimits): boolean {
  return a === b || (a.requestsPerMinute === b.requestsPerMinute && a.requestsPerHour === b.requestsPerHour &&
    a.monthlyQuota === b.monthlyQuota && a.concurrentRequests === b.concurrentRequests)
}
