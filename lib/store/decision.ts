// The decision both stores return, from what they counted for one request: the Redis store reads
// that from the script's reply (admit-protocol.ts), the memory store counts it itself.
import type { TierLimits } from '../tiers.js'
import type { MonthCache } from './calendar.js'
import { HOUR_MS, MINUTE_MS, type Crossing, type Decision, type LevelState, type RejectReason, type Scope, type WindowState } from './types.js'

const REASONS: ReadonlyArray<RejectReason | undefined> =
  [undefined, 'rate_limit_exceeded', 'concurrent_limit_exceeded', 'quota_exceeded']

/**
 * What a store counted for one request: the reason (0 admitted, 1 rate_limit_exceeded,
 * 2 concurrent_limit_exceeded, 3 quota_exceeded), the wait, the store's clock, and what each window,
 * the subject's month, the leases and the bucket's own month hold after it (0 where unlimited).
 */
export type AdmitOutcome = readonly [
  reason: number, retryAfterMs: number, now: number,
  minuteUsed: number, hourUsed: number, monthUsed: number, inFlight: number, bucketMonthUsed: number
]

const remainingOf = (limit: number, used: number): number => limit === Infinity ? Infinity : Math.max(0, limit - used)

/**
 * When everything a window counts at `now` has left it: the end of the bucket after the window's
 * last (the oldest bucket counts in full until it has wholly left), or `now` when nothing is counted.
 */
function resetOf (limit: number, used: number, now: number, bucketMs: number, k: number): number {
  if (limit === Infinity || used <= 0) return now
  return Math.ceil((Math.floor(now / bucketMs) + k + 1) * bucketMs)
}

/**
 * The month a decision reports: the subject's quota, or the bucket's own cap when that one leaves
 * less (the one that binds).
 */
function monthOf (monthlyQuota: number, monthUsed: number, bucketQuota: number, bucketUsed: number, resetAt: number): WindowState {
  const remaining = remainingOf(monthlyQuota, monthUsed)
  if (bucketQuota !== Infinity) {
    const bucketRemaining = remainingOf(bucketQuota, bucketUsed)
    if (bucketRemaining < remaining) return { limit: bucketQuota, remaining: bucketRemaining, resetAt }
  }
  return { limit: monthlyQuota, remaining, resetAt }
}

export function decisionOf (outcome: AdmitOutcome, limits: TierLimits, bucketQuota: number, k: number, months: MonthCache, crossings?: readonly Crossing[]): Decision {
  const now = outcome[2]
  const minuteUsed = outcome[3]
  const hourUsed = outcome[4]
  const { requestsPerMinute, requestsPerHour, monthlyQuota } = limits
  const decision: Decision = {
    allowed: outcome[0] === 0,
    reason: REASONS[outcome[0]],
    retryAfterMs: outcome[1],
    now,
    minute: { limit: requestsPerMinute, remaining: remainingOf(requestsPerMinute, minuteUsed), resetAt: resetOf(requestsPerMinute, minuteUsed, now, MINUTE_MS / k, k) },
    hour: { limit: requestsPerHour, remaining: remainingOf(requestsPerHour, hourUsed), resetAt: resetOf(requestsPerHour, hourUsed, now, HOUR_MS / k, k) },
    month: monthOf(monthlyQuota, outcome[5], bucketQuota, outcome[7], months.of(now).end),
    concurrent: { limit: limits.concurrentRequests, inFlight: outcome[6] }
  }
  return crossings === undefined ? decision : { ...decision, crossings }
}

/**
 * The crossings a level's reply reported, as the subject's (`scope`) for its quota and its bucket's
 * cap; undefined when none.
 */
export function crossingsOf (scope: 'tenant' | 'organization', reported: { quota: readonly number[], bucket: readonly number[] } | undefined,
  outcome: AdmitOutcome, monthlyQuota: number, bucketQuota: number): Crossing[] | undefined {
  if (reported === undefined) return undefined
  const out: Crossing[] = []
  for (const threshold of reported.quota) out.push({ scope, bucket: false, threshold, used: outcome[5], quota: monthlyQuota })
  for (const threshold of reported.bucket) out.push({ scope, bucket: true, threshold, used: outcome[7], quota: bucketQuota })
  return out.length === 0 ? undefined : out
}

/** The tighter of two states of one window: the one with less left (`a` on a tie). */
function tighter (a: WindowState, b: WindowState): WindowState {
  return b.limit !== Infinity && (a.limit === Infinity || b.remaining < a.remaining) ? b : a
}

/**
 * One decision from the decisions of a request's levels (the subject's first), each made against
 * its own limits in the same step. Admitted only when every level admitted; a refusal names the
 * level that refused, the one that frees last when several did, and waits for it. Each window and
 * the concurrency report the tightest level's numbers.
 */
export function combineLevels (scopes: readonly Scope[], decisions: readonly Decision[]): Decision {
  const first = decisions[0]
  let refusing = -1
  let { minute, hour, month, concurrent } = first
  const levels: LevelState[] = []
  for (let i = 0; i < decisions.length; i++) {
    const d = decisions[i]
    if (!d.allowed && (refusing === -1 || d.retryAfterMs > decisions[refusing].retryAfterMs)) refusing = i
    levels.push({ scope: scopes[i], reason: d.reason, minute: d.minute, hour: d.hour, month: d.month, concurrent: d.concurrent })
    if (i === 0) continue
    minute = tighter(minute, d.minute)
    hour = tighter(hour, d.hour)
    month = tighter(month, d.month)
    const c = d.concurrent
    if (c.limit !== Infinity && (concurrent.limit === Infinity || c.limit - c.inFlight < concurrent.limit - concurrent.inFlight)) concurrent = c
  }
  if (refusing === -1) {
    // Only an admission counts, so only an admitted request crosses a threshold, at any level.
    let crossings: Crossing[] | undefined
    for (const d of decisions) if (d.crossings !== undefined) (crossings ??= []).push(...d.crossings)
    return { allowed: true, reason: undefined, retryAfterMs: 0, now: first.now, minute, hour, month, concurrent, levels, ...(crossings === undefined ? {} : { crossings }) }
  }
  const refused = decisions[refusing]
  return { allowed: false, reason: refused.reason, retryAfterMs: refused.retryAfterMs, now: first.now, minute, hour, month, concurrent, scope: scopes[refusing], levels }
}
