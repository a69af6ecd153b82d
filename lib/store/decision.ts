// Both stores answer with the same flat reply (the Lua script's return shape); this reads it.
import type { TierLimits } from '../tiers.js'
import type { Decision, RejectReason } from './types.js'

const REASONS: ReadonlyArray<RejectReason | undefined> =
  [undefined, 'rate_limit_exceeded', 'concurrent_limit_exceeded', 'quota_exceeded']

/** Reply layout: see lib/lua/admit-2.lua. */
export type AdmitReply = readonly [
  allowed: number, reason: number, retryAfterMs: number, now: number,
  minuteRemaining: number, minuteResetAt: number, hourRemaining: number, hourResetAt: number,
  monthRemaining: number, monthResetAt: number, inFlight: number
]

const remainingOf = (n: number): number => n < 0 ? Infinity : n

export function decodeDecision (reply: AdmitReply, limits: TierLimits): Decision {
  return {
    allowed: reply[0] === 1,
    reason: REASONS[reply[1]],
    retryAfterMs: reply[2],
    now: reply[3],
    minute: { limit: limits.requestsPerMinute, remaining: remainingOf(reply[4]), resetAt: reply[5] },
    hour: { limit: limits.requestsPerHour, remaining: remainingOf(reply[6]), resetAt: reply[7] },
    month: { limit: limits.monthlyQuota, remaining: remainingOf(reply[8]), resetAt: reply[9] },
    concurrent: { limit: limits.concurrentRequests, inFlight: reply[10] }
  }
}

/** Limits as the script takes them: -1 for unlimited. */
export function limitArg (limit: number): number {
  return limit === Infinity ? -1 : limit
}
