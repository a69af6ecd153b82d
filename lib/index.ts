// @maestro/rate-limiting: tiered, strictly sliding-window rate limiting for Fastify.
//
// Reading order: options → store → policies → limiter → decorators → per-route hooks → onClose.
import type { FastifyInstance, FastifyPluginAsync, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { AlreadyRegisteredError } from './errors.js'
import { kLease, Limiter } from './limiter.js'
import { resolveOptions, type RateLimitContext, type RateLimitingOptions } from './options.js'
import { resolveRouteConfig, type RouteRateLimitConfig } from './route-config.js'
import { createStore } from './store/create-store.js'
import type { RateLimitStore } from './store/types.js'
import { PolicyManager } from './policies/policy-manager.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The store deciding this instance's requests. */
    rateLimitStore: RateLimitStore
    /** Dynamic policies: overrides, multipliers, runtime tiers, blocks, shadow mode. */
    policies: PolicyManager
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

  // 1. Options: validated once; boot fails on anything wrong, naming the field.
  const options = resolveOptions(rawOptions)

  // 2. Store: the given store, else Redis (option or fastify.redis), else memory.
  const { store, owned, redis } = createStore(options, fastify)
  fastify.log.info({ store: store.kind }, 'rate limiting: using the %s store', store.kind)

  // 3. Policies: tiers, overrides, multipliers, blocks, shadow mode; held in memory, kept fresh from Redis.
  const policies = new PolicyManager(redis, {
    keyPrefix: options.keyPrefix,
    tiers: rawOptions.tiers,
    defaultTier: options.defaultTier,
    anonymousTier: options.anonymousTier,
    environment: options.environment,
    reloadIntervalSeconds: options.policyReloadSeconds,
    store,
    log: fastify.log
  })
  await policies.start()

  // 4. The limiter: one store call per limited request.
  const limiter = new Limiter(options, store, policies)

  fastify.decorate('rateLimitStore', store)
  fastify.decorate('policies', policies)
  fastify.decorateRequest('rateLimit', null)
  fastify.decorateRequest(kLease, null)

  // 5. Every route: config.rateLimit resolved now, so a bad value fails boot and requests pay nothing.
  fastify.addHook('onRoute', (route) => attachToRoute(route, options.hook, options.global, limiter))

  // 6. Shutdown: close only what this plugin created.
  fastify.addHook('onClose', async () => {
    await policies.close()
    if (owned) await store.close()
  })
}

function attachToRoute (route: RouteOptions, hook: string, global: boolean, limiter: Limiter): void {
  const name = `${Array.isArray(route.method) ? route.method.join(',') : route.method} ${route.url}`
  const limited = resolveRouteConfig(name, route.config?.rateLimit, global)
  if (limited === undefined) return
  const release = (request: Parameters<Limiter['release']>[0]): void => limiter.release(request)
  appendHook(route, hook, limiter.hookFor(limited))
  // A lease is given back exactly once: on the response, a client abort, or a timeout.
  appendHook(route, 'onResponse', (request: never, _reply: unknown, done: () => void) => { release(request); done() })
  appendHook(route, 'onRequestAbort', (request: never, done: () => void) => { release(request); done() })
  appendHook(route, 'onTimeout', (request: never, _reply: unknown, done: () => void) => { release(request); done() })
}

function appendHook (route: RouteOptions, name: string, hook: unknown): void {
  const slot = route as unknown as Record<string, unknown>
  const existing = slot[name]
  slot[name] = existing === undefined ? [hook] : Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}

export default fp(rateLimiting, { name: '@maestro/rate-limiting', fastify: '5.x' })
export { rateLimiting }

export type { FastifyInstance }
export type {
  RateLimitingOptions, TenantIdentity, TenantExtractor, RateLimitContext, HookName,
  ErrorResponseBuilder, ExceededListener
} from './options.js'
export type { RouteRateLimitConfig } from './route-config.js'
export { DEFAULT_TIERS, UNLIMITED_TIER, type TierLimits, type TierLimitsInput, type LimitInput } from './tiers.js'
export { MemoryStore, type MemoryStoreOptions } from './store/memory-store.js'
export { RedisStore, ADMIT_SCRIPT, USAGE_SCRIPT, type RedisStoreOptions } from './store/redis-store.js'
export type { RateLimitStore, Decision, WindowState, AdmitRequest, RejectReason, WindowSettings, Usage } from './store/types.js'
export { storeKeys, encodeId, type StoreKeys } from './keys.js'
export {
  PolicyManager, applyMultiplier, type PolicyManagerOptions, type TenantOverride, type ShadowScope,
  type ResolvedPolicy, type TenantUsage, type WindowUsage
} from './policies/policy-manager.js'
export { POLICY_WRITE_SCRIPT } from './policies/policy-backend.js'
export { InvalidOptionError, InvalidRouteConfigError, InvalidPolicyError, AlreadyRegisteredError, StoreReplyError, RATE_LIMITED_CODE, BLOCKED_CODE } from './errors.js'
