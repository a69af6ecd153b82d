// request.rateLimit: what the limiter decided for a request, and its settlement. The route's cost is
// a reservation taken at admission; `settle(finalCost)` sets the real cost, and when the request
// ends the difference is charged or given back in one store call (see Limiter.finish), in the
// buckets that held the reservation. `refundWhen` may give the whole reservation back instead.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { InvalidSettleError } from './errors.js'
import type { StoreKeys } from './keys.js'
import { isCost, MAX_COST } from './route-cost.js'
import type { RateLimitContext } from './options.js'
import { countedIn, type AdjustRequest, type AdmitLevel, type Decision } from './store/types.js'
import type { TierLimits } from './tiers.js'

/** Decides, once the request is over, whether its whole reservation goes back. */
export type RefundWhen = (request: FastifyRequest, reply: FastifyReply) => boolean

export class RequestRateLimit implements RateLimitContext {
  decision: Decision | undefined = undefined
  // The settlement's own state: private fields, so that logging or serialising request.rateLimit
  // shows only the decision's context.
  /** The cost `settle()` set; undefined until then. */
  #settled: number | undefined = undefined
  /** Whether refundWhen has been asked (it is asked once), and whether it asked for a refund. */
  #refundAsked = false
  #refundAll = false
  /** Whether the settlement went to the store (it goes once). */
  #closed = false
  /** Where the reservation was counted. */
  readonly #keys: StoreKeys
  readonly #bucketQuota: number
  /** The levels above the subject that counted the reservation with it. */
  readonly #levels: readonly AdmitLevel[] | undefined
  readonly #refundWhen: RefundWhen | undefined
  readonly #reply: FastifyReply

  constructor (
    readonly subject: string,
    readonly anonymous: boolean,
    readonly tier: string,
    readonly organizationId: string | undefined,
    readonly bucket: string | undefined,
    readonly cost: number,
    readonly limits: TierLimits,
    readonly shadow: boolean,
    keys: StoreKeys,
    bucketQuota: number,
    levels: readonly AdmitLevel[] | undefined,
    refundWhen: RefundWhen | undefined,
    reply: FastifyReply
  ) {
    this.#keys = keys
    this.#bucketQuota = bucketQuota
    this.#levels = levels
    this.#refundWhen = refundWhen
    this.#reply = reply
  }

  settle (finalCost: number): void {
    if (this.#settled !== undefined) throw new InvalidSettleError('settle() was already called for this request')
    if (!isCost(finalCost)) {
      throw new InvalidSettleError(`the final cost must be a whole number from 0 to ${MAX_COST}, got ${String(finalCost).slice(0, 40)}`)
    }
    // After its response nothing can count; after refundWhen refunded an aborted request, a settle
    // from the handler still running is moot, not an error.
    if (this.#closed && !this.#refundAll) throw new InvalidSettleError('the request is over: settle() must be called before the response is sent')
    this.#settled = finalCost
  }

  /**
   * The store changes the request's end calls for (undefined: none), once: the subject's first, then
   * one per level above it that counted the reservation. `answered`: the handler
   * has answered (or never will: its client left before the decision); an abort before that only
   * asks refundWhen, and a refund it asks for waits for the decision if there is none yet.
   */
  settlement (request: FastifyRequest, answered: boolean): AdjustRequest[] | undefined {
    if (this.#closed) return undefined
    if (this.#refundWhen !== undefined && !this.#refundAsked) {
      this.#refundAsked = true
      this.#refundAll = this.#refundWhen(request, this.#reply)
    }
    if ((!answered && !this.#refundAll) || this.decision === undefined) return undefined
    const finalCost = this.#refundAll ? 0 : this.#settled
    this.#closed = true
    const { decision } = this
    // Only a reservation the store counted: not a refusal, a shadow pass, a fallback's or a bypass.
    if (finalCost === undefined || finalCost === this.cost || !decision.allowed || decision.degraded === true) return undefined
    const keys = this.#keys
    const amount = finalCost - this.cost
    const changes: AdjustRequest[] = [{ keys, amount, reservedAt: decision.now, counted: countedIn(keys, this.limits, this.#bucketQuota) }]
    for (const level of this.#levels ?? []) {
      changes.push({ keys: level.keys, amount, reservedAt: decision.now, counted: countedIn(level.keys, level.limits, Infinity) })
    }
    return changes
  }
}
