// The levels of limits above a request's subject, decided with it all or nothing: its organization
// (the sum of its tenants' traffic) and the route's shared budget (every caller of the routes naming it).
import { InvalidRouteConfigError } from './errors.js'
import { KeyCache, type StoreKeys } from './keys.js'
import type { PolicyManager } from './policies/policy-manager.js'
import type { SharedBudget } from './route-config.js'
import type { AdmitLevel } from './store/types.js'
import type { TierLimits } from './tiers.js'

/** The organization a request belongs to, as the tenant extractor reports it. */
export interface OrganizationIdentity {
  readonly organizationId?: string
  readonly organizationTier?: string
}

/** Organizations whose level is kept ready (about 10 MB at most). */
const MAX_ORGANIZATIONS = 50_000

export class LevelResolver {
  private readonly keys: KeyCache
  /** Per shared budget, its level for the limits it was last held to (the environment multiplier may change). */
  private readonly routeLevels = new WeakMap<SharedBudget, AdmitLevel>()
  /** Per organization, its level for the policy it was last held to: the request path allocates none. */
  private readonly organizationLevels = new Map<string, AdmitLevel>()
  /** The levels of an organization and a route together, once per pair. */
  private readonly pairs = new WeakMap<AdmitLevel, WeakMap<AdmitLevel, AdmitLevel[]>>()
  private readonly singles = new WeakMap<AdmitLevel, AdmitLevel[]>()

  constructor (keyPrefix: string, private readonly policies: PolicyManager) {
    this.keys = new KeyCache(keyPrefix)
  }

  /** Budget name → the limits and the route that first gave them (every route naming it must agree). */
  private readonly budgets = new Map<string, { readonly limits: TierLimits, readonly route: string }>()

  /**
   * A route naming a shared budget, at registration: refused (InvalidRouteConfigError) when another
   * route gave the same budget other limits, which would hold its callers to two budgets in one.
   */
  registerBudget (shared: SharedBudget, routeName: string): void {
    const known = this.budgets.get(shared.name)
    if (known === undefined) {
      this.budgets.set(shared.name, { limits: shared.limits, route: routeName })
      this.policies.registerSharedBudget(shared.name, shared.limits)
      return
    }
    const a = known.limits
    const b = shared.limits
    if (a.requestsPerMinute !== b.requestsPerMinute || a.requestsPerHour !== b.requestsPerHour || a.concurrentRequests !== b.concurrentRequests) {
      throw new InvalidRouteConfigError(routeName, `rateLimit.shared: budget "${shared.name}" has other limits on ${known.route}; routes sharing a budget must give it the same limits`)
    }
  }

  /**
   * The levels above a subject (undefined: none), the organization's before the route's. The same
   * array for the same levels: callers never change it.
   */
  levelsOf (organization: OrganizationIdentity | undefined, shared: SharedBudget | undefined): readonly AdmitLevel[] | undefined {
    const organizationId = organization?.organizationId
    const org = organizationId === undefined ? undefined : this.organizationLevel(organizationId, organization?.organizationTier)
    const route = shared === undefined ? undefined : this.routeLevel(shared)
    if (org === undefined) return route === undefined ? undefined : this.single(route)
    if (route === undefined) return this.single(org)
    let byRoute = this.pairs.get(org)
    if (byRoute === undefined) {
      byRoute = new WeakMap()
      this.pairs.set(org, byRoute)
    }
    let pair = byRoute.get(route)
    if (pair === undefined) {
      pair = [org, route]
      byRoute.set(route, pair)
    }
    return pair
  }

  private single (level: AdmitLevel): AdmitLevel[] {
    let one = this.singles.get(level)
    if (one === undefined) {
      one = [level]
      this.singles.set(level, one)
    }
    return one
  }

  private organizationLevel (organizationId: string, tier: string | undefined): AdmitLevel | undefined {
    const policy = this.policies.forOrganization(organizationId, tier)
    if (policy === undefined) return undefined
    let level = this.organizationLevels.get(organizationId)
    if (level === undefined || level.limits !== policy.limits) {
      // Bounded as the key cache is: past it, organizations are looked up afresh.
      if (this.organizationLevels.size >= MAX_ORGANIZATIONS) this.organizationLevels.clear()
      level = { scope: 'organization', keys: this.keys.get('organization', organizationId, undefined), limits: policy.limits, id: organizationId, tier: policy.tier }
      this.organizationLevels.set(organizationId, level)
    }
    return level
  }

  private routeLevel (shared: SharedBudget): AdmitLevel {
    const limits: TierLimits = this.policies.multiplyLimits(shared.limits)
    let level = this.routeLevels.get(shared)
    if (level === undefined || level.limits !== limits) {
      level = { scope: 'route', keys: this.keys.get('route', shared.name, undefined), limits }
      this.routeLevels.set(shared, level)
    }
    return level
  }
}

/** The leases a request holds: at its subject and at every level with a concurrency limit. */
export function leaseKeysOf (keys: StoreKeys, limits: TierLimits, levels: readonly AdmitLevel[] | undefined): StoreKeys[] {
  const held: StoreKeys[] = limits.concurrentRequests === Infinity ? [] : [keys]
  for (const level of levels ?? []) if (level.limits.concurrentRequests !== Infinity) held.push(level.keys)
  return held
}
