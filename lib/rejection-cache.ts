// A subject already over a window or its quota is answered locally until the moment the store said
// capacity frees: a flood from one client costs no Redis call. Keyed by counters and cost (a
// cheaper request may still fit), used only for the limits that were refused (a route or tier with
// other limits on the same counters asks the store), dropped on any policy change (a raised limit
// applies at once).
import type { Decision } from './store/types.js'
import type { TierLimits } from './tiers.js'

const MAX_ENTRIES = 10_000

interface Entry { readonly until: number, readonly at: number, readonly decision: Decision }

export class RejectionCache {
  private readonly entries = new Map<string, Entry>()
  private generation = -1

  /** A still-valid rejection for this key, cost and limits, with Retry-After counted down; else undefined. */
  get (counters: string, cost: number, limits: TierLimits, generation: number): Decision | undefined {
    if (this.entries.size === 0) return undefined
    if (generation !== this.generation) {
      this.entries.clear()
      return undefined
    }
    const key = cost === 1 ? counters : counters + '#' + cost
    const entry = this.entries.get(key)
    if (entry === undefined || !sameLimits(entry.decision, limits)) return undefined
    const now = Date.now()
    if (now >= entry.until) {
      this.entries.delete(key)
      return undefined
    }
    return { ...entry.decision, retryAfterMs: entry.until - now, now: entry.decision.now + (now - entry.at) }
  }

  /** Remembers a rejection that only time can lift (windows and quota; not concurrency). */
  set (counters: string, cost: number, decision: Decision, generation: number): void {
    if (decision.reason === 'concurrent_limit_exceeded' || decision.degraded === true || decision.retryAfterMs <= 0) return
    if (generation !== this.generation) {
      this.entries.clear()
      this.generation = generation
    }
    if (this.entries.size >= MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value as string)
    const at = Date.now()
    this.entries.set(cost === 1 ? counters : counters + '#' + cost, { until: at + decision.retryAfterMs, at, decision })
  }
}

/** Whether `decision` was made under these limits (its headers show them all). */
function sameLimits (decision: Decision, limits: TierLimits): boolean {
  return decision.minute.limit === limits.requestsPerMinute && decision.hour.limit === limits.requestsPerHour &&
    decision.month.limit === limits.monthlyQuota && decision.concurrent.limit === limits.concurrentRequests
}
