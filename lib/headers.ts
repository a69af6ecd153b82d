// Response headers: X-RateLimit-* on every limited response, Retry-After and X-RateLimit-Error on
// rejections, and optionally the IETF RateLimit-Policy / RateLimit fields of
// draft-ietf-httpapi-ratelimit-headers-10 or -11 (see ietfWindowSeconds). Unlimited dimensions are omitted.
import type { FastifyReply } from 'fastify'
import { utcMonth } from './store/calendar.js'
import type { Decision, WindowState } from './store/types.js'

const seconds = (ms: number): number => Math.max(0, Math.ceil(ms / 1000))

/** Whole seconds until a rejected request would be admitted (at least 1). */
export function retryAfterSeconds (decision: Decision): number {
  return Math.max(1, seconds(decision.retryAfterMs))
}

/**
 * Unix seconds: on rejection, when the request would be admitted; else when `window` (by default
 * the minute window, else the hour, else the month) is wholly free again.
 */
export function resetAt (decision: Decision, window: WindowState = firstLimited(decision)): number {
  if (!decision.allowed) return Math.ceil((decision.now + decision.retryAfterMs) / 1000)
  return Math.ceil(Math.max(window.resetAt, decision.now) / 1000)
}

function firstLimited ({ minute, hour, month }: Decision): WindowState {
  return minute.limit !== Infinity ? minute : hour.limit !== Infinity ? hour : month
}

const concurrentRemaining = ({ concurrent }: Decision): number => Math.max(0, concurrent.limit - concurrent.inFlight)

export function setRateLimitHeaders (reply: FastifyReply, decision: Decision): void {
  const { minute, hour, month, concurrent } = decision
  if (minute.limit !== Infinity) {
    reply.header('x-ratelimit-limit-minute', minute.limit)
    reply.header('x-ratelimit-remaining-minute', minute.remaining)
  }
  if (hour.limit !== Infinity) {
    reply.header('x-ratelimit-limit-hour', hour.limit)
    reply.header('x-ratelimit-remaining-hour', hour.remaining)
  }
  if (month.limit !== Infinity) {
    reply.header('x-ratelimit-limit-month', month.limit)
    reply.header('x-ratelimit-remaining-month', month.remaining)
  }
  if (concurrent.limit !== Infinity) {
    reply.header('x-ratelimit-concurrent-limit', concurrent.limit)
    reply.header('x-ratelimit-concurrent-remaining', concurrentRemaining(decision))
  }
  reply.header('x-ratelimit-reset', resetAt(decision))
}

/**
 * The compact set: X-RateLimit-Limit, -Remaining and -Reset of the window with the least left (the
 * first to refuse; minute, hour, month in that order on a tie), or of concurrency when no window is
 * limited. Three headers instead of up to nine: every header costs the server and the client.
 */
export function setCompactRateLimitHeaders (reply: FastifyReply, decision: Decision): void {
  const { minute, hour, month, concurrent } = decision
  let window = minute.limit !== Infinity ? minute : undefined
  if (hour.limit !== Infinity && (window === undefined || hour.remaining < window.remaining)) window = hour
  if (month.limit !== Infinity && (window === undefined || month.remaining < window.remaining)) window = month
  if (window === undefined) {
    if (concurrent.limit === Infinity) return
    reply.header('x-ratelimit-limit', concurrent.limit)
    reply.header('x-ratelimit-remaining', concurrentRemaining(decision))
    return
  }
  reply.header('x-ratelimit-limit', window.limit)
  reply.header('x-ratelimit-remaining', window.remaining)
  reply.header('x-ratelimit-reset', resetAt(decision, window))
}

/** Which revision of draft-ietf-httpapi-ratelimit-headers the RateLimit fields follow. */
export type IetfDraft = 'draft-10' | 'draft-11'

/**
 * The `t` of one window. Both drafts share the wire syntax; they differ in what `t` means.
 * - draft-10: seconds until additional quota is made available. We report when everything counted
 *   now has left the window (the store does not track when its oldest sub-bucket leaves, which can
 *   be sooner; the draft lets a sliding window report a later moment). 0 when nothing is counted.
 * - draft-11: the effective window, over which the available quota `r` may be used. With usage
 *   counted, it lasts until that usage has left and the full quota is back; with nothing counted,
 *   it is the whole window (`r` is the full quota, for the next `windowSeconds`).
 * Under both, a window that refused the request gives the wait for that request, never more than
 * Retry-After: a client that waits `t` is not told to wait again by the same window.
 */
export function ietfWindowSeconds (decision: Decision, window: WindowState, windowSeconds: number, cost: number, draft: IetfDraft): number {
  const untilFree = seconds(window.resetAt - decision.now)
  if (!decision.allowed && window.remaining < cost) return Math.min(untilFree, retryAfterSeconds(decision))
  if (draft === 'draft-11' && window.remaining >= window.limit) return windowSeconds
  return untilFree
}

/**
 * `"minute";q=10;w=60, "hour";q=100;w=3600, "month";q=10000;w=2592000` and the matching RateLimit.
 * `r` is the quota left now under both drafts (draft-11 calls it the available quota: in a sliding
 * window it grows back as old usage leaves, it does not wait for a reset). The month is a calendar
 * month: its `t` runs to the month's end under both drafts.
 */
export function setIetfHeaders (reply: FastifyReply, decision: Decision, cost: number, draft: IetfDraft): void {
  const policies: string[] = []
  const states: string[] = []
  // Over several levels each one is a policy of its own: "minute" is the tenant's, "organization-
  // minute" its organization's, "route-minute" the route's shared budget.
  for (const level of decision.levels ?? [decision]) {
    const name = 'scope' in level && level.scope !== 'tenant' ? level.scope + '-' : ''
    const { minute, hour, month } = level
    if (minute.limit !== Infinity) {
      policies.push(`"${name}minute";q=${minute.limit};w=60`)
      states.push(`"${name}minute";r=${minute.remaining};t=${ietfWindowSeconds(decision, minute, 60, cost, draft)}`)
    }
    if (hour.limit !== Infinity) {
      policies.push(`"${name}hour";q=${hour.limit};w=3600`)
      states.push(`"${name}hour";r=${hour.remaining};t=${ietfWindowSeconds(decision, hour, 3600, cost, draft)}`)
    }
    if (month.limit !== Infinity) {
      policies.push(`"${name}month";q=${month.limit};w=${monthLengthSeconds(month.resetAt)}`)
      states.push(`"${name}month";r=${month.remaining};t=${seconds(month.resetAt - decision.now)}`)
    }
  }
  if (policies.length === 0) return
  reply.header('ratelimit-policy', policies.join(', '))
  reply.header('ratelimit', states.join(', '))
}

/** Length in seconds of the UTC month that ends at `monthEnd`. */
function monthLengthSeconds (monthEnd: number): number {
  const { start, end } = utcMonth(monthEnd - 1)
  return (end - start) / 1000
}
