// Response headers: X-RateLimit-* on every limited response, Retry-After and X-RateLimit-Error on
// rejections, and optionally the IETF RateLimit-Policy / RateLimit fields
// (draft-ietf-httpapi-ratelimit-headers-10, structured-field lists). Unlimited dimensions are omitted.
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

/** `"minute";q=10;w=60, "hour";q=100;w=3600, "month";q=10000;w=2592000` and the matching RateLimit. */
export function setIetfHeaders (reply: FastifyReply, decision: Decision): void {
  const policies: string[] = []
  const states: string[] = []
  const { minute, hour, month, now } = decision
  if (minute.limit !== Infinity) {
    policies.push(`"minute";q=${minute.limit};w=60`)
    states.push(`"minute";r=${minute.remaining};t=${seconds(minute.resetAt - now)}`)
  }
  if (hour.limit !== Infinity) {
    policies.push(`"hour";q=${hour.limit};w=3600`)
    states.push(`"hour";r=${hour.remaining};t=${seconds(hour.resetAt - now)}`)
  }
  if (month.limit !== Infinity) {
    policies.push(`"month";q=${month.limit};w=${monthLengthSeconds(month.resetAt)}`)
    states.push(`"month";r=${month.remaining};t=${seconds(month.resetAt - now)}`)
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
