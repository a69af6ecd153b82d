// `config.rateLimit.cost` as a function of the request: its answer checked on every request, and a
// bad one turned into an error naming the route (never a silent default cost).
import type { FastifyRequest } from 'fastify'
import { RouteCostError } from './errors.js'

/** A route's cost, computed per request (a bulk endpoint: the number of items in the body). */
export type CostFunction = (request: FastifyRequest) => number | Promise<number>

/**
 * The checked cost of one request: a whole number from 0 to MAX_COST, or the RouteCostError to answer with
 * (already logged). Never throws nor rejects. A function that answers synchronously is answered
 * synchronously: only a returned promise makes this one.
 */
export type CheckedCost = (request: FastifyRequest) => number | Error | Promise<number | Error>

/** The largest cost of one request, a number or a function's answer alike. */
export const MAX_COST = 1_000_000

/** Wraps a route's cost function; `routeName` is the route's methods and path. */
export function checkedCost (routeName: string, fn: CostFunction): CheckedCost {
  const failed = (request: FastifyRequest, what: string, cause?: unknown): Error => {
    const err = cause === undefined ? new RouteCostError(routeName, what) : new RouteCostError(routeName, what, { cause })
    request.log.error({ route: routeName, err: cause ?? err }, 'rate limiting: cost function of route %s %s', routeName, what)
    return err
  }
  const check = (request: FastifyRequest, value: unknown): number | Error =>
    isCost(value) ? value : failed(request, `returned ${describe(value)}; expected a whole number from 0 to ${MAX_COST}`)
  return (request) => {
    let value: unknown
    try {
      value = fn(request)
    } catch (err) {
      return failed(request, `threw: ${errorText(err)}`, err)
    }
    if (!isThenable(value)) return check(request, value)
    return Promise.resolve(value).then(
      resolved => check(request, resolved),
      (err: unknown) => failed(request, `rejected: ${errorText(err)}`, err))
  }
}

/** A whole number from 0 to MAX_COST: what any cost (a function's, a settle's, an API call's) must be. */
export function isCost (value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_COST
}

function isThenable (value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}

/** A value for a message: short, whatever its size (a body returned by mistake is not echoed). */
function describe (value: unknown): string {
  if (typeof value === 'string') return 'the string ' + clip(JSON.stringify(value))
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint' ||
      value === undefined || value === null) return String(value) + (typeof value === 'bigint' ? 'n' : '')
  if (typeof value === 'function') return 'a function'
  if (Array.isArray(value)) return `an array of ${value.length}`
  return 'an object'
}

function errorText (err: unknown): string {
  return clip(err instanceof Error ? `${err.name}: ${err.message}` : describe(err))
}

function clip (text: string): string {
  return text.length > 80 ? text.slice(0, 77) + '...' : text
}
