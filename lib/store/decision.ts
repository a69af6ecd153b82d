// Both stores answer with the same flat reply (the Lua script's return shape); this reads it.
import type { TierLimits } from '../tiers.js'
import type { MonthCache } from './calendar.js'
import { HOUR_MS, MINUTE_MS, type Decision, type RejectReason, type WindowState } from './types.js'

const REASONS: ReadonlyArray<RejectReason | undefined> =
  [undefined, 'rate_limit_exceeded', 'concurrent_limit_exceeded', 'quota_exceeded']

/** Reply layout: see lib/lua/admit-batch.lua. Used amounts are 0 for unlimited windows. */
export type AdmitReply = readonly [
  reason: number, retryAfterMs: number, now: number,
  minuteUsed: number, hourUsed: number, monthUsed: number, inFlight: number, bucketMonthUsed: number
]

const SPACE = 32
const MINUS = 45
const ZERO = 48

/**
 * Reads the script's reply line ('0 0 1764236000123 3 3 3 1 0'): eight integers separated by single
 * spaces. Undefined when it is anything else. Parsed in place: no substrings, no array of strings.
 */
export function parseAdmitReply (line: unknown): AdmitReply | undefined {
  if (typeof line !== 'string') return undefined
  const out: number[] = []
  let value = 0
  let sign = 1
  let digits = 0
  for (let i = 0; i <= line.length; i++) {
    const c = i === line.length ? SPACE : line.charCodeAt(i)
    if (c === SPACE) {
      if (digits === 0) return undefined
      out.push(sign * value)
      value = 0
      sign = 1
      digits = 0
    } else if (c === MINUS && digits === 0 && sign === 1) {
      sign = -1
    } else if (c >= ZERO && c <= ZERO + 9) {
      value = value * 10 + (c - ZERO)
      digits++
    } else {
      return undefined
    }
  }
  return out.length === 8 ? out as unknown as AdmitReply : undefined
}

const remainingOf = (limit: number, used: number): number => limit === Infinity ? Infinity : Math.max(0, limit - used)

/**
 * When everything a window counts at `now` has left it: the end of the bucket after the window's
 * last (the oldest bucket counts in full until it has wholly left), or `now` when nothing is counted.
 * The script sends used amounts only; this is the same arithmetic it would do.
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

export function decodeDecision (reply: AdmitReply, limits: TierLimits, bucketQuota: number, k: number, months: MonthCache): Decision {
  const now = reply[2]
  const minuteUsed = reply[3]
  const hourUsed = reply[4]
  const monthUsed = reply[5]
  const { requestsPerMinute, requestsPerHour, monthlyQuota } = limits
  return {
    allowed: reply[0] === 0,
    reason: REASONS[reply[0]],
    retryAfterMs: reply[1],
    now,
    minute: { limit: requestsPerMinute, remaining: remainingOf(requestsPerMinute, minuteUsed), resetAt: resetOf(requestsPerMinute, minuteUsed, now, MINUTE_MS / k, k) },
    hour: { limit: requestsPerHour, remaining: remainingOf(requestsPerHour, hourUsed), resetAt: resetOf(requestsPerHour, hourUsed, now, HOUR_MS / k, k) },
    month: monthOf(monthlyQuota, monthUsed, bucketQuota, reply[7], months.of(now).end),
    concurrent: { limit: limits.concurrentRequests, inFlight: reply[6] }
  }
}

/** Limits as the script takes them: -1 for unlimited. */
export function limitArg (limit: number): number {
  return limit === Infinity ? -1 : limit
}
