// @maestro/rate-limiting: tiered, strictly sliding-window rate limiting for Fastify.
//
// Reading order: options → store → metrics → policies → limiter → decorators → per-route hooks
// → unmatched routes → lease hooks → refusal bodies → metrics route → checks at ready → onClose.
import type { FastifyInstance, FastifyPluginAsync, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import { AlreadyRegisteredError } from './errors.js'
import { doneOf, kLease, Limiter, type LimitHook } from './limiter.js'
import { createMetrics, UNMATCHED_ENDPOINT } from './metrics.js'
import { resolveOptions, type RateLimitContext, type RateLimitingOptions } from './options.js'
import { PolicyManager } from './policies/policy-manager.js'
import { sharedLimiter, type RouteRateLimitConfig } from './route-config.js'
import { attachToRoute } from './route-hooks.js'
import { addLeaseHooks } from './lease-hooks.js'
import { addRefusalReason } from './refusal-body.js'
import { LeaseKeeper } from './lease-keeper.js'
import { LimiterApi, type RateLimiter } from './limiter-api.js'
import { LevelResolver } from './levels.js'
import { AlertPublisher } from './alerts/alert-publisher.js'
import { AlertSweep } from './alerts/alert-sweep.js'
import { UsageNotes } from './alerts/usage-notes.js'
import { RejectionCache } from './rejection-cache.js'
import { RateLimitStatus } from './status.js'
import { DegradedLog } from './degraded-log.js'
import { warnIfClientsPickTheirKey } from './proxy-trust.js'
import { createStore, refuseUnusedRedis, reportStore, requireRedis } from './store/create-store.js'
import { closeOwnedRedis } from './store/owned-redis.js'
import { warnAboutEarlierRoutes } from './route-order.js'
import type { RateLimitStore } from './store/types.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The store deciding this instance's requests. */
    rateLimitStore: RateLimitStore
    /** Dynamic policies: overrides, multipliers, runtime tiers, blocks, shadow mode. */
    policies: PolicyManager
    /** The limiter outside HTTP hooks: consume, peek and refund for a tenant or a client address. */
    rateLimiter: RateLimiter
    /** This instance's store health and the latest quota alerts, for operators. */
    rateLimitStatus: RateLimitStatus
  }
  interface FastifyRequest {
    /** What the limiter decided for this request; null when the route is not limited. */
    rateLimit: RateLimitContext | null
  }
  interface FastifyContextConfig {
    /** `false`: not limited nor counted; `true`/object: limited, with these settings. */
    rateLimit?: boolean | RouteRateLimitConfig
  }
}

const rateLimiting: FastifyPluginAsync<RateLimitingOptions> = async (fastify, rawOptions) => {
  if (fastify.hasDecorator('rateLimitStore')) throw new AlreadyRegisteredError()

  // 1. Options: validated once; boot fails on anything wrong, naming the field. A server that lets
  //    clients choose their own anonymous key (trustProxy: true) is told so.
  const options = resolveOptions(rawOptions)
  warnIfClientsPickTheirKey(fastify, rawOptions?.anonymousKey !== undefined)

  // 2. Store: the given store (or 'memory'), else Redis (a client or URL as option, or fastify.redis),
  //    else memory with a warning; Redis behind a deadline, a circuit breaker and an optional local
  //    fallback. A fastify.redis the plugin cannot use fails boot rather than split limits silently.
  const chosen = createStore(options, fastify)
  const { store, owned, redis, ownedClient } = chosen
  reportStore(chosen, fastify)
  refuseUnusedRedis(fastify, chosen.source, 'registration')
  if (options.requireStoreAtBoot) await requireRedis(chosen)

  // 3. Metrics (prom-client, when installed and not turned off).
  const { metrics, registry } = await createMetrics(options.metrics, fastify.log)

  // 4. Policies: tiers, overrides, multipliers, blocks, shadow mode; held in memory, kept fresh from Redis.
  const policies = new PolicyManager(redis, {
    keyPrefix: options.keyPrefix,
    tiers: rawOptions.tiers,
    defaultTier: options.defaultTier,
    anonymousTier: options.anonymousTier,
    environment: options.environment,
    reloadIntervalSeconds: options.policyReloadSeconds,
    store,
    log: fastify.log,
    onInvalidEntry: () => metrics.invalidPolicyEntry()
  })
  await policies.start()
  // Tiers configured here are recorded under the prefix, so maestro-rl and other services know them.
  await policies.recordConfiguredTiers()

  // 5. The limiter: one store call per limited request, deciding the tenant's limits with its
  //    organization's and the route's shared budget; leases of running requests kept alive. The
  //    same policies, store and counters serve fastify.rateLimiter (consume, peek, refund).
  //    Decisions made without the store are logged once per outage, then summarised.
  const leases = new LeaseKeeper(store, options.leaseTtlMs, fastify.log)
  const degraded = new DegradedLog(fastify.log)
  const rejections = new RejectionCache()
  const levels = new LevelResolver(options.keyPrefix, policies)
  // Quota alerts: events for the thresholds admissions cross, to onAlert and the stream (Redis).
  const alerts = options.quotaAlerts === false ? undefined : new AlertPublisher(options.quotaAlerts, redis, fastify.log)
  const sweep = alerts === undefined || redis === undefined || options.quotaAlerts === false ? undefined : new AlertSweep(redis, options.keyPrefix, alerts, options.quotaAlerts.sweepMs, fastify.log)
  sweep?.start()
  const usageNotes = new UsageNotes(store)
  const limiter = new Limiter(options, store, policies, metrics, leases, degraded, rejections, levels, alerts, usageNotes)

  fastify.decorate('rateLimitStore', store)
  fastify.decorate('policies', policies)
  fastify.decorate('rateLimiter', new LimiterApi(options, store, policies, metrics, rejections, levels, alerts, usageNotes) as RateLimiter)
  fastify.decorate('rateLimitStatus', new RateLimitStatus(store, redis, degraded, alerts))
  fastify.decorateRequest('rateLimit', null)
  fastify.decorateRequest(kLease, null)

  // 6. Every route: config.rateLimit resolved now, so a bad value fails boot and requests pay nothing.
  //    Routes added before the plugin never pass here: they are named in a warning.
  warnAboutEarlierRoutes(fastify)
  fastify.addHook('onRoute', (route) => attachToRoute(route, options.hook, options.global, limiter))

  // 7. Requests that match no route are held to the shared limits too (scanners, probes).
  if (options.limitNotFound && options.global) {
    const limitUnmatched = limiter.hookFor(sharedLimiter, UNMATCHED_ENDPOINT)
    const limitIfUnmatched: LimitHook = (request, reply, doneOrPayload, preParsingDone) => {
      if (request.is404) limitUnmatched(request, reply, doneOrPayload, preParsingDone)
      else doneOf(doneOrPayload, preParsingDone)()
    }
    fastify.addHook(options.hook as 'onRequest', limitIfUnmatched as unknown as onRequestHookHandler)
  }

  // 8. Leases go back when the response is sent, whichever route (or none) answered.
  addLeaseHooks(fastify, limiter)

  // 9. Refusals go through Fastify's error handling; its default body gets their reason back.
  addRefusalReason(fastify)

  // 10. GET /metrics, when asked for.
  const route = options.metrics === false ? undefined : options.metrics?.route
  if (registry !== undefined && route !== undefined && route !== false) {
    fastify.get(route === true ? '/metrics' : route, { config: { rateLimit: false } }, async (_request, reply) => {
      reply.type(registry.contentType)
      return await registry.metrics()
    })
  }

  // 11. At ready: a fastify.redis decorated after the plugin (which then chose memory) fails boot.
  fastify.addHook('onReady', async () => refuseUnusedRedis(fastify, chosen.source, 'ready'))

  // 12. Shutdown: close only what this plugin created; its own Redis client last.
  fastify.addHook('onClose', async () => {
    leases.stop()
    degraded.stop()
    await sweep?.stop()
    await policies.close()
    if (owned) await store.close()
    if (ownedClient !== undefined) await closeOwnedRedis(ownedClient)
  })
}

export default fp(rateLimiting, { name: '@maestro/rate-limiting', fastify: '5.x' })
export { rateLimiting }

export type { FastifyInstance }
export type {
  RateLimitingOptions, TenantIdentity, TenantExtractor, RateLimitContext, HookName, QuotaAlertsOptions,
  ErrorResponseBuilder, ExceededListener
} from './options.js'
export type { RouteRateLimitConfig, SharedBudgetConfig } from './route-config.js'
export type { QuotaAlertEvent } from './alerts/alert-event.js'
export type {
  RateLimiter, LimiterIdentity, LimiterCallOptions, ConsumeOptions, LimiterDecision, ConsumedDecision, Refunded
} from './limiter-api.js'
export type { CostFunction } from './route-cost.js'
export type { RefundWhen } from './request-context.js'
export type { MetricsOptions, MetricsRegistry } from './metrics.js'
export { DEFAULT_TIERS, UNLIMITED_TIER, type TierLimits, type TierLimitsInput, type LimitInput } from './tiers.js'
export { MemoryStore, type MemoryStoreOptions } from './store/memory-store.js'
export { RedisStore, type RedisStoreOptions } from './store/redis-store.js'
export type { RateLimitStore, Decision, WindowState, AdmitRequest, AdmitLevel, LevelState, Scope, AdjustRequest, Adjusted, CountedIn, RejectReason, WindowSettings, Usage } from './store/types.js'
export type { StoreKeys } from './keys.js'
export type { UsageRecord } from './store/types.js'
export type { UsageReportOptions, UsageReportRow } from './policies/policy-manager.js'
export type { RateLimitStatus, StoreHealth, RecentAlertsQuery, RecentAlertsReply } from './status.js'
export {
  PolicyManager, type PolicyManagerOptions, type TenantOverride, type ShadowScope,
  type ResolvedPolicy, type TierSource, type TenantUsage, type UsageOptions, type WindowUsage,
  type OrganizationOverride, type OrganizationPolicy, type ResolvedOrganizationPolicy, type OrganizationTierSource,
  type ResetUsageOptions, type UsageScope
} from './policies/policy-manager.js'
export {
  InvalidOptionError, InvalidRouteConfigError, InvalidPolicyError, AlreadyRegisteredError, StoreReplyError, RedisNotUsedError,
  RATE_LIMITED_CODE, BLOCKED_CODE,
  RateLimitExceededError, TenantBlockedError, StoreUnavailableRefusalError, CallerUnidentifiedError, ExtractorFailedError,
  InvalidLimiterCallError, RouteCostError, InvalidSettleError
} from './errors.js'
export type { Refusal } from './refusal-body.js'
