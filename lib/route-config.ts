// `config.rateLimit` on a route: validated once when the route is added, then a ready answer to
// "which limits does tier X get here" for every request.
import Type from 'typebox'
import { Compile } from 'typebox/compile'
import { InvalidRouteConfigError } from './errors.js'
import { PartialTierLimitsSchema } from './options.js'
import type { RefundWhen } from './request-context.js'
import { checkedCost, MAX_COST, type CheckedCost, type CostFunction } from './route-cost.js'
import { infinityToNull, overlayLimits, type TierLimits, type TierLimitsInput } from './tiers.js'
import { explain } from './validation.js'

export interface RouteRateLimitConfig {
  /**
   * How much one request counts against the windows and the month: a whole number >= 1, or a
   * function of the request returning (or resolving to) a whole number >= 0. Default 1.
   */
  cost?: number | CostFunction
  /** Count in these named counters instead of the tenant's shared ones (shared by routes naming it). */
  bucket?: string
  /**
   * Limits for every tier on this route (field by field over the tier's own). A `monthlyQuota` here
   * is a cap on this route's bucket, on top of the tenant's own quota, which every bucket shares.
   */
  limits?: Partial<TierLimitsInput>
  /** Limits for named tiers on this route (over `limits`). */
  tiers?: Record<string, Partial<TierLimitsInput>>
  /**
   * Called once when the request is over (its response sent, or its client gone); `true` gives the
   * whole reservation back (e.g. `reply.statusCode >= 500`).
   */
  refundWhen?: RefundWhen
  /**
   * A budget for the route's total traffic, across all tenants and all instances (a fragile
   * downstream behind it), decided together with the caller's own limits. Routes naming one budget
   * share it.
   */
  shared?: SharedBudgetConfig
}

export interface SharedBudgetConfig {
  /** Routes giving the same name share one budget. Default: the route's own (method and path). */
  name?: string
  requestsPerMinute?: number
  requestsPerHour?: number
  concurrentRequests?: number
}

/** A shared route budget, resolved: its name and its limits (no monthly quota). */
export interface SharedBudget {
  readonly name: string
  readonly limits: TierLimits
}

const SharedLimit = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })
const SharedBudgetSchema = Type.Object({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
  requestsPerMinute: Type.Optional(SharedLimit),
  requestsPerHour: Type.Optional(SharedLimit),
  concurrentRequests: Type.Optional(SharedLimit)
}, { additionalProperties: false })

const RouteConfigSchema = Type.Union([
  Type.Literal(false),
  Type.Literal(true),
  Type.Object({
    cost: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_COST })),
    bucket: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
    limits: Type.Optional(PartialTierLimitsSchema),
    tiers: Type.Optional(Type.Record(Type.String(), PartialTierLimitsSchema)),
    shared: Type.Optional(SharedBudgetSchema)
  }, { additionalProperties: false })
])
const checkRouteConfig = Compile(RouteConfigSchema)

/** A limited route, resolved. */
export interface RouteLimiter {
  /** The cost of every request, unless `costOf` computes it per request. */
  readonly cost: number
  /** The route's cost function, checked: a cost, or the error to answer with. */
  readonly costOf?: CheckedCost
  readonly bucket: string | undefined
  /**
   * The limits a tier gets on this route, given that tier's own limits. Memoised per tier object.
   * The monthly quota stays the tier's: it is the tenant's, counted across all buckets.
   */
  limitsFor (tierName: string, tierLimits: TierLimits): TierLimits
  /** The route's own monthly cap on its bucket for a tier (`Infinity`: none). */
  bucketQuotaFor (tierName: string): number
  /** Whether a request's whole reservation goes back when it is over. */
  readonly refundWhen?: RefundWhen
  /** The budget the route's total traffic shares with the routes naming it. */
  readonly shared?: SharedBudget
}

/**
 * Returns undefined when the route is not limited. Throws InvalidRouteConfigError naming the route
 * and the field. Routes with their own `limits`/`tiers` and no `bucket` count in counters of their
 * own (named `countersName`, method and path), so a route limit never borrows from the tenant's shared ones.
 */
export function resolveRouteConfig (routeName: string, value: unknown, global: boolean, countersName = routeName): RouteLimiter | undefined {
  if (value === undefined) return global ? sharedLimiter : undefined
  // A function cannot be checked by the schema: it is taken out, and the rest validated.
  const costFunction = costFunctionOf(value)
  const refundWhen = refundWhenOf(routeName, value)
  const normalised = normaliseInfinity(costFunction === undefined && refundWhen === undefined ? value : withoutFunctions(value as RouteRateLimitConfig))
  const problem = explain(checkRouteConfig, normalised, 'rateLimit')
  if (problem !== undefined) throw new InvalidRouteConfigError(routeName, problem)
  if (normalised === false) return undefined
  if (normalised === true) return sharedLimiter
  const config = normalised as RouteRateLimitConfig & { cost?: number }
  const hasOwnLimits = config.limits !== undefined || config.tiers !== undefined
  const shared = sharedBudgetOf(routeName, config.shared, countersName)
  if (!hasOwnLimits && config.bucket === undefined && config.cost === undefined && costFunction === undefined && refundWhen === undefined && shared === undefined) return sharedLimiter
  return new ConfiguredRouteLimiter(
    config.cost ?? 1,
    costFunction === undefined ? undefined : checkedCost(routeName, costFunction),
    config.bucket ?? (hasOwnLimits ? 'route:' + countersName : undefined),
    config.limits,
    config.tiers ?? {},
    refundWhen,
    shared
  )
}

/** A route's shared budget: at least one limit, named after the route unless it names one. */
function sharedBudgetOf (routeName: string, config: SharedBudgetConfig | undefined, countersName: string): SharedBudget | undefined {
  if (config === undefined) return undefined
  const { requestsPerMinute, requestsPerHour, concurrentRequests } = config
  if (requestsPerMinute === undefined && requestsPerHour === undefined && concurrentRequests === undefined) {
    throw new InvalidRouteConfigError(routeName, 'rateLimit.shared must set at least one of requestsPerMinute, requestsPerHour, concurrentRequests')
  }
  return {
    name: config.name ?? 'route:' + countersName,
    limits: Object.freeze({
      requestsPerMinute: requestsPerMinute ?? Infinity,
      requestsPerHour: requestsPerHour ?? Infinity,
      concurrentRequests: concurrentRequests ?? Infinity,
      monthlyQuota: Infinity
    })
  }
}

export const sharedLimiter: RouteLimiter = {
  cost: 1,
  bucket: undefined,
  limitsFor: (_name, tierLimits) => tierLimits,
  bucketQuotaFor: () => Infinity
}

class ConfiguredRouteLimiter implements RouteLimiter {
  // Per tier name, the tier limits it was computed from: a tier redefined at runtime is recomputed.
  private readonly memo = new Map<string, { readonly from: TierLimits, readonly limits: TierLimits }>()

  constructor (
    readonly cost: number,
    readonly costOf: CheckedCost | undefined,
    readonly bucket: string | undefined,
    private readonly allTiers: Partial<TierLimitsInput> | undefined,
    private readonly perTier: Record<string, Partial<TierLimitsInput>>,
    readonly refundWhen: RefundWhen | undefined,
    readonly shared: SharedBudget | undefined
  ) {}

  limitsFor (tierName: string, tierLimits: TierLimits): TierLimits {
    const known = this.memo.get(tierName)
    if (known !== undefined && known.from === tierLimits) return known.limits
    const limits = overlayLimits(overlayLimits(tierLimits, withoutMonth(this.allTiers)), withoutMonth(this.perTier[tierName]))
    this.memo.set(tierName, { from: tierLimits, limits })
    return limits
  }

  bucketQuotaFor (tierName: string): number {
    const perTier = this.perTier[tierName]
    const own = perTier !== undefined && 'monthlyQuota' in perTier ? perTier.monthlyQuota : this.allTiers?.monthlyQuota
    return own === undefined || own === null ? Infinity : own
  }
}

/** A route's limits without its monthly cap (which counts in the route's bucket, not the tenant's month). */
function withoutMonth (limits: Partial<TierLimitsInput> | undefined): Partial<TierLimitsInput> | undefined {
  if (limits === undefined || !('monthlyQuota' in limits)) return limits
  const { monthlyQuota: _cap, ...rest } = limits
  return rest
}

function costFunctionOf (value: unknown): CostFunction | undefined {
  if (value === null || typeof value !== 'object') return undefined
  const cost = (value as { cost?: unknown }).cost
  return typeof cost === 'function' ? cost as CostFunction : undefined
}

/** The route's refundWhen; a value that is not a function fails boot. */
function refundWhenOf (routeName: string, value: unknown): RefundWhen | undefined {
  if (value === null || typeof value !== 'object' || !('refundWhen' in value)) return undefined
  const refundWhen = (value as { refundWhen?: unknown }).refundWhen
  if (typeof refundWhen !== 'function') throw new InvalidRouteConfigError(routeName, 'rateLimit.refundWhen must be a function (request, reply) => boolean')
  return refundWhen as RefundWhen
}

function withoutFunctions (config: RouteRateLimitConfig): Omit<RouteRateLimitConfig, 'refundWhen'> {
  const { refundWhen: _refund, ...rest } = config
  if (typeof rest.cost !== 'function') return rest
  const { cost: _function, ...others } = rest
  return others
}

function normaliseInfinity (value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value
  const config = value as Record<string, unknown>
  const out: Record<string, unknown> = { ...config }
  if (config.limits !== null && typeof config.limits === 'object') out.limits = infinityToNull(config.limits)
  if (config.tiers !== null && typeof config.tiers === 'object') {
    out.tiers = Object.fromEntries(Object.entries(config.tiers as Record<string, object>)
      .map(([name, limits]) => [name, infinityToNull(limits)]))
  }
  return out
}
