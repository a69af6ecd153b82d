// fastify.rateLimiter: the limiter outside HTTP hooks (websocket messages, queue jobs, resolvers).
// The same policies, the same store call and the same counters as HTTP requests of the same tenant
// and bucket; only the answer is a value instead of a response.
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { clientKey } from './client-key.js'
import { InvalidLimiterCallError, StoreUnavailableRefusalError } from './errors.js'
import { KeyCache, subjectBaseOf, type StoreKeys } from './keys.js'
import { leaseKeysOf, type LevelResolver } from './levels.js'
import type { AlertPublisher } from './alerts/alert-publisher.js'
import type { UsageNotes } from './alerts/usage-notes.js'
import { recordAdmission, type EndpointMetrics, type LimiterMetrics } from './metrics.js'
import type { ResolvedOptions } from './options.js'
import type { RejectionCache } from './rejection-cache.js'
import type { PolicyManager, RequestPolicy } from './policies/policy-manager.js'
import { sharedLimiter, type RouteLimiter } from './route-config.js'
import { isCost, MAX_COST } from './route-cost.js'
import { countedIn, type AdmitLevel, type Decision, type RateLimitStore, type RejectReason } from './store/types.js'
import { isUnlimited, type TierLimits } from './tiers.js'

/**
 * Who is calling: a tenant as an extractor returns it (with its organization, whose limits then hold
 * too), or an anonymous client by its address.
 */
export type LimiterIdentity = {
  readonly tenantId: string
  readonly tier?: string
  readonly organizationId?: string
  readonly organizationTier?: string
} | { readonly anonymous: string }

export interface LimiterCallOptions {
  /** How much the call counts (a whole number, 0 to 1,000,000). Default 1. */
  readonly cost?: number
  /** The named counters of routes with this `bucket`; default the subject's shared counters. */
  readonly bucket?: string
}

export interface ConsumeOptions extends LimiterCallOptions {
  /** Also take a concurrency lease (checked against the tier's concurrency limit). Default false. */
  readonly lease?: boolean
}

/** A decision of the limiter API: an HTTP request's, plus the block and shadow cases. */
export interface LimiterDecision extends Omit<Decision, 'reason'> {
  readonly reason: RejectReason | 'blocked' | undefined
  /** Shadow mode: admitted, but this is the reason enforcement would have refused. */
  readonly shadow?: RejectReason
}

/** A consumed decision; with `lease: true` and admitted, `release()` gives the lease back (once). */
export interface ConsumedDecision extends LimiterDecision {
  readonly release?: () => void
}

/** What a refund gave back, per count. */
export interface Refunded {
  readonly minute: number
  readonly hour: number
  readonly month: number
}

export interface RateLimiter {
  consume (identity: LimiterIdentity, options?: ConsumeOptions): Promise<ConsumedDecision>
  peek (identity: LimiterIdentity, options?: LimiterCallOptions): Promise<LimiterDecision>
  refund (identity: LimiterIdentity, options?: LimiterCallOptions): Promise<Refunded>
}

/** The endpoint label of the API's calls in the metrics. */
export const API_ENDPOINT = 'api'

const MAX_ID = 1024
const MAX_BUCKET = 256

interface Call {
  readonly subject: string
  readonly anonymous: boolean
  readonly cost: number
  readonly keys: StoreKeys
  readonly policy: RequestPolicy
  /** The organization's level, when the tenant has one with limits. */
  readonly levels: readonly AdmitLevel[] | undefined
}

export class LimiterApi implements RateLimiter {
  private readonly keys: KeyCache
  private readonly endpoint: EndpointMetrics
  private readonly buckets = new Map<string, RouteLimiter>()
  private readonly leasePrefix = randomBytes(9).toString('base64url') + ':api:'
  private leaseSeq = 0

  constructor (
    private readonly options: ResolvedOptions,
    private readonly store: RateLimitStore,
    private readonly policies: PolicyManager,
    private readonly metrics: LimiterMetrics,
    /** The HTTP limiter's remembered rejections: a refund makes the subject's stale. */
    private readonly rejections: RejectionCache,
    private readonly levelResolver: LevelResolver,
    /** Quota alerts, when on: thresholds a consume crosses become events, as for HTTP requests. */
    private readonly alerts: AlertPublisher | undefined,
    /** The HTTP limiter's: a subject is named in its usage record once per month, whoever counts it. */
    private readonly usageNotes: UsageNotes
  ) {
    this.keys = new KeyCache(options.keyPrefix)
    this.endpoint = metrics.endpoint(API_ENDPOINT)
  }

  async consume (identity: LimiterIdentity, options: ConsumeOptions = {}): Promise<ConsumedDecision> {
    const call = this.call('consume', identity, options)
    const lease = options.lease === true
    const { subject, anonymous, cost, keys, policy } = call
    const levels = lease ? call.levels : call.levels?.map(withoutConcurrencyLevel)
    const series = this.endpoint.series(subject, anonymous, policy.tier)
    if (policy.block !== undefined) {
      series.request('rejected')
      series.rejection('blocked')
      return blocked(policy)
    }
    if (isUnlimited(policy.limits) && policy.bucketQuota === Infinity && levels === undefined) {
      series.request('bypassed')
      return unlimited()
    }
    const limits = lease ? policy.limits : withoutConcurrency(policy.limits)
    const held = leaseKeysOf(keys, limits, levels)
    const leaseId = held.length > 0 ? this.leasePrefix + (++this.leaseSeq).toString(36) : ''
    const started = this.metrics.enabled ? performance.now() : 0
    let decision: Decision
    try {
      if (!anonymous) this.usageNotes.note(keys, subject, policy.tier, levels, options.bucket)
      decision = await this.store.admit({ keys, cost, limits, leaseId, bucketQuota: policy.bucketQuota, levels, keepUsage: !anonymous })
    } catch {
      this.metrics.storeError(this.store.kind)
      this.metrics.failDecision(this.options.failMode)
      series.request('error')
      if (this.options.failMode === 'closed') throw new StoreUnavailableRefusalError()
      return degraded()
    }
    if (this.metrics.enabled) this.metrics.decision((performance.now() - started) / 1000, decision.degraded === true ? 'fallback' : this.store.kind)
    if (!decision.allowed) {
      const reason = decision.reason as RejectReason
      if (policy.shadow) {
        series.request('shadow')
        return asShadow(decision)
      }
      series.request('rejected')
      series.rejection(reason, decision.scope ?? 'tenant')
      return decision
    }
    if (this.metrics.enabled) recordAdmission(this.metrics, decision, series)
    if (decision.crossings !== undefined) this.alerts?.publish(decision, { subject, tier: policy.tier, bucket: options.bucket, keys, levels })
    if (leaseId === '') return decision
    this.metrics.leaseTaken(policy.tier)
    let holding = true
    const release = (): void => {
      if (!holding) return
      holding = false
      for (const leaseKeys of held) this.store.release(leaseKeys, leaseId)
      this.metrics.leaseReleased(policy.tier)
    }
    return { ...decision, release }
  }

  async peek (identity: LimiterIdentity, options: LimiterCallOptions = {}): Promise<LimiterDecision> {
    const { cost, keys, policy, levels } = this.call('peek', identity, options)
    if (policy.block !== undefined) return blocked(policy)
    if (isUnlimited(policy.limits) && policy.bucketQuota === Infinity && levels === undefined) return unlimited()
    const decision = await this.store.admit({
      keys, cost, limits: withoutConcurrency(policy.limits), leaseId: '', bucketQuota: policy.bucketQuota, peek: true, levels: levels?.map(withoutConcurrencyLevel)
    })
    if (!decision.allowed && policy.shadow) return asShadow(decision)
    return decision
  }

  async refund (identity: LimiterIdentity, options: LimiterCallOptions = {}): Promise<Refunded> {
    const { cost, keys, policy, levels } = this.call('refund', identity, options)
    if (cost === 0) return { minute: 0, hour: 0, month: 0 }
    const { store } = this
    if (store.adjust === undefined) throw new InvalidLimiterCallError('refund: this rate-limit store cannot adjust counts (it has no adjust method)')
    // The organization gets the same amount back, from what it counts now (its own call).
    const [given] = await Promise.all([
      store.adjust({ keys, amount: -cost, counted: countedIn(keys, policy.limits, policy.bucketQuota) }),
      ...(levels ?? []).map(async level => await (store.adjust as NonNullable<RateLimitStore['adjust']>)({ keys: level.keys, amount: -cost, counted: countedIn(level.keys, level.limits, Infinity) }))
    ])
    this.rejections.forget(subjectBaseOf(keys))
    return { minute: -given.minute, hour: -given.hour, month: -given.month }
  }

  /** Checks a call's arguments (a clear error naming what is wrong) and resolves its policy and keys. */
  private call (method: string, identity: LimiterIdentity, options: LimiterCallOptions): Call {
    if (identity === null || typeof identity !== 'object') throw new InvalidLimiterCallError(`${method}: identity must be { tenantId, tier? } or { anonymous: address }`)
    const cost = options.cost ?? 1
    if (!isCost(cost)) throw new InvalidLimiterCallError(`${method}: cost must be a whole number from 0 to ${MAX_COST}, got ${String(cost)}`)
    const { bucket } = options
    if (bucket !== undefined && (typeof bucket !== 'string' || bucket.length === 0 || bucket.length > MAX_BUCKET)) {
      throw new InvalidLimiterCallError(`${method}: bucket must be a string of 1 to ${MAX_BUCKET} characters`)
    }
    const route = this.routeFor(bucket)
    if ('anonymous' in identity) {
      if (typeof identity.anonymous !== 'string' || identity.anonymous.length === 0 || identity.anonymous.length > MAX_ID) {
        throw new InvalidLimiterCallError(`${method}: identity.anonymous must be a client address`)
      }
      const subject = clientKey(identity.anonymous, this.options.ipv6Subnet)
      const policy = this.policies.forRequest(undefined, undefined, route)
      return { subject, anonymous: true, cost, keys: this.keys.get('anonymous', subject, bucket), policy, levels: undefined }
    }
    const { tenantId, tier, organizationId, organizationTier } = identity
    if (typeof tenantId !== 'string' || tenantId.length === 0 || tenantId.length > MAX_ID) {
      throw new InvalidLimiterCallError(`${method}: identity.tenantId must be a string of 1 to ${MAX_ID} characters`)
    }
    if (tier !== undefined && tier !== null && typeof tier !== 'string') throw new InvalidLimiterCallError(`${method}: identity.tier must be a string`)
    if (organizationId !== undefined && organizationId !== null && (typeof organizationId !== 'string' || organizationId.length === 0 || organizationId.length > MAX_ID)) {
      throw new InvalidLimiterCallError(`${method}: identity.organizationId must be a string of 1 to ${MAX_ID} characters`)
    }
    if (organizationTier !== undefined && organizationTier !== null && typeof organizationTier !== 'string') throw new InvalidLimiterCallError(`${method}: identity.organizationTier must be a string`)
    const org = organizationId ?? undefined
    const policy = this.policies.forRequest(tenantId, tier ?? undefined, route, org)
    const levels = this.levelResolver.levelsOf({ organizationId: org, organizationTier: organizationTier ?? undefined }, undefined)
    return { subject: tenantId, anonymous: false, cost, keys: this.keys.get('tenant', tenantId, bucket, org), policy, levels }
  }

  /** The bucket's counters with the tier's limits (a route's own limits belong to its HTTP route). */
  private routeFor (bucket: string | undefined): RouteLimiter {
    if (bucket === undefined) return sharedLimiter
    let route = this.buckets.get(bucket)
    if (route === undefined) {
      route = { ...sharedLimiter, bucket }
      if (this.buckets.size < 10_000) this.buckets.set(bucket, route)
    }
    return route
  }
}

/** Shadow mode: a refusal reported, not enforced. */
function asShadow (decision: Decision): LimiterDecision {
  return { ...decision, allowed: true, reason: undefined, retryAfterMs: 0, shadow: decision.reason }
}

function withoutConcurrency (limits: TierLimits): TierLimits {
  return limits.concurrentRequests === Infinity ? limits : { ...limits, concurrentRequests: Infinity }
}

function withoutConcurrencyLevel (level: AdmitLevel): AdmitLevel {
  return level.limits.concurrentRequests === Infinity ? level : { ...level, limits: withoutConcurrency(level.limits) }
}

const OPEN_WINDOW = { limit: Infinity, remaining: Infinity, resetAt: 0 }

function unlimited (): LimiterDecision {
  const now = Date.now()
  return { allowed: true, reason: undefined, retryAfterMs: 0, now, minute: OPEN_WINDOW, hour: OPEN_WINDOW, month: OPEN_WINDOW, concurrent: { limit: Infinity, inFlight: 0 } }
}

function degraded (): LimiterDecision {
  return { ...unlimited(), degraded: true }
}

function blocked (policy: RequestPolicy): LimiterDecision {
  const now = Date.now()
  const until = policy.block?.expiresAt ?? null
  const window = (limit: number): { limit: number, remaining: number, resetAt: number } => ({ limit, remaining: 0, resetAt: until ?? now })
  const { limits } = policy
  return {
    allowed: false,
    reason: 'blocked',
    retryAfterMs: until === null ? 0 : Math.max(0, until - now),
    now,
    minute: window(limits.requestsPerMinute),
    hour: window(limits.requestsPerHour),
    month: window(limits.monthlyQuota),
    concurrent: { limit: limits.concurrentRequests, inFlight: 0 }
  }
}
