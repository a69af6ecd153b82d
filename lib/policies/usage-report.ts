// What usage() answers: one subject's counters against the limits it is held to.
import type { Usage } from '../store/types.js'
import type { LimitInput, TierLimitsInput } from '../tiers.js'

/** Whose counters: a tenant's, an organization's (the sum of its tenants) or a shared route budget's. */
export type UsageScope = 'tenant' | 'organization' | 'route'

export interface WindowUsage { limit: number | null, used: number, remaining: number | null }

export interface TenantUsage {
  scope: UsageScope
  /** The tenant's, the organization's or the shared budget's id. */
  id: string
  /** The same id: the name it had before organizations, kept for existing callers. */
  tenantId: string
  /**
   * A tenant: the organization whose hash tag holds the counters read (null: its own keys). An
   * organization: its id. A shared budget: null.
   */
  organizationId: string | null
  /** The tier whose limits are reported; null for an organization without a tier, or a shared budget. */
  tier: string | null
  bucket: string | null
  now: number
  minute: WindowUsage
  hour: WindowUsage
  month: WindowUsage & { resetAt: number }
  concurrent: { limit: number | null, inFlight: number }
}

export interface UsageSubject {
  readonly scope: UsageScope
  readonly id: string
  readonly organizationId: string | null
  readonly tier: string | null
  readonly bucket: string | null
}

/** The reply of usage(): what was counted, against `limits` (null: unlimited). */
export function usageReport (subject: UsageSubject, limits: TierLimitsInput, used: Usage): TenantUsage {
  return {
    scope: subject.scope,
    id: subject.id,
    tenantId: subject.id,
    organizationId: subject.organizationId,
    tier: subject.tier,
    bucket: subject.bucket,
    now: used.now,
    minute: windowUsage(limits.requestsPerMinute, used.minute),
    hour: windowUsage(limits.requestsPerHour, used.hour),
    month: { ...windowUsage(limits.monthlyQuota, used.month), resetAt: used.monthResetAt },
    concurrent: { limit: limits.concurrentRequests, inFlight: used.inFlight }
  }
}

function windowUsage (limit: LimitInput, used: number): WindowUsage {
  return { limit, used, remaining: limit === null ? null : Math.max(0, limit - used) }
}
