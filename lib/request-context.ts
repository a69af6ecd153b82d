// request.rateLimit: what the limiter decided for a request, and its settlement. The route's cost is
// a reservation taken at admission; `settle(finalCost)` sets the real cost, and when the request
// ends the difference is charged or given back in one store call (see Limiter.finish), in the
// buckets that held the reservation. `refundWhen` may give the whole reservation back instead.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { InvalidSettleError } from './errors.js'
import type { StoreKeys } from './keys.js'
import type { RateLimitContext } from './options.js'
import type { AdjustRequest, Decision } from './store/types.js'
import type { TierLimits } from './tiers.js'

/** Decides, once the request is over, whether its whole reservation goes back. */
export type RefundWhen = (request: FastifyRequest, reply: FastifyReply) => boolean

const MAX_COST = 1_000_000

export class RequestRateLimit implements RateLimitContext {
  decision: Decision | undefined = undefined
  // The settlement's own state: private fields, so that logging or serialising request.rateLimit
  // shows only the decision's context.
  /** The cost `settle()` set; undefined until then. */
  #settled: number | undefined = undefined
  /** Whether refundWhen has been asked (it is asked once). */
  #refundAsked = false
  /** Whether the settlement went to the store (it goes once). */
  #closed = false
  /** Where the reservation was counted. */
  readonly #keys: StoreKeys
  readonly #bucketQuota: number
  readonly #refundWhen: RefundWhen | undefined
  readonly #reply: FastifyReply

  constructor (
    readonly subject: string,
    readonly anonymous: boolean,
    readonly tier: string,
    readonly bucket: string | undefined,
    readonly cost: number,
    readonly limits: TierLimits,
    readonly shadow: boolean,
    keys: StoreKeys,
    bucketQuota: number,
    refundWhen: RefundWhen | undefined,
    reply: FastifyReply
  ) {
    this.#keys = keys
    this.#bucketQuota = bucketQuota
    this.#refundWhen = refundWhen
    this.#reply = reply
  }

  settle (finalCost: number): void {
    if (this.#settled !== undefined) throw new InvalidSettleError('settle() was already called for this request')
    if (this.#closed) throw new InvalidSettleError('the request is over: settle() must be called before the response is sent')
    if (!Number.isInteger(finalCost) || finalCost < 0 || finalCost > MAX_COST) {
      throw new InvalidSettleError(`the final cost must be a whole number from 0 to ${MAX_COST}, got ${String(finalCost).slice(0, 40)}`)
    }
    this.#settled = finalCost
  }

  /**
   * The store change the request's end calls for (undefined: none), once. `answered`: the handler
   * has answered; an abort before that only asks refundWhen (a settle may still come).
   */
  settlement (request: FastifyRequest, answered: boolean): AdjustRequest | undefined {
    if (this.#closed) return undefined
    // Left before the store answered: refundWhen is asked once the reservation is counted (or not).
    if (!answered && this.decision === undefined) return undefined
    let finalCost = this.#settled
    if (this.#refundWhen !== undefined && !this.#refundAsked) {
      this.#refundAsked = true
      if (this.#refundWhen(request, this.#reply)) finalCost = 0
      else if (!answered) return undefined
    } else if (!answered) {
      return undefined
    }
    this.#closed = true
    const { decision, limits } = this
    const keys = this.#keys
    const bucketQuota = this.#bucketQuota
    // Only a reservation the store counted: not a refusal, a shadow pass, a fallback's or a bypass.
    if (finalCost === undefined || finalCost === this.cost || decision === undefined || !decision.allowed || decision.degraded === true) return undefined
    const shared = keys.month === keys.counters
    return {
      keys,
      amount: finalCost - this.cost,
      reservedAt: decision.now,
      counted: {
        minute: limits.requestsPerMinute !== Infinity,
        hour: limits.requestsPerHour !== Infinity,
        month: limits.monthlyQuota !== Infinity || (bucketQuota !== Infinity && shared),
        bucketMonth: bucketQuota !== Infinity && !shared
      }
    }
  }
}
