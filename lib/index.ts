// @maestro/rate-limiting: tiered, strictly sliding-window rate limiting for Fastify.
//
// Reading order: options → store → tiers → limiter → per-route hooks → onClose.
import type { FastifyInstance, FastifyPluginAsync, RouteOptions } from 'fastify'
import fp from 'fastify-plugin'
import { AlreadyRegisteredError } from './errors.js'
import { kLease, Limiter } from './limiter.js'
import { resolveOptions, type RateLimitContext, type RateLimitingOptions } from './options.js'
import { resolveRouteConfig, type RouteRateLimitConfig } from './route-config.js'
import { createStore } from './store/create-store.js'
import type { RateLimitStore } from './store/types.js'
import { TierTable } from './tier-table.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The store deciding this instance's requests. */
    rateLimitStore: RateLimitStore
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
  const { store, owned } = createStore(options, fastify)
  fastify.log.info({ store: store.kind }, 'rate limiting: using the %s store', store.kind)

  // 3. Tiers and the limiter that holds requests to them.
  const tiers = new TierTable(options.tiers, options.defaultTier, fastify.log)
  const limiter = new Limiter(options, store, tiers)

  fastify.decorate('rateLimitStore', store)
  fastify.decorateRequest('rateLimit', null)
  fastify.decorateRequest(kLease, null)

  // 4. Every route: config.rateLimit resolved now, so a bad value fails boot and requests pay nothing.
  fastify.addHook('onRoute', (route) => attachToRoute(route, options.hook, options.global, limiter))

  // 5. Shutdown: close only what this plugin created.
  fastify.addHook('onClose', async () => {
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
export { RedisStore, ADMIT_SCRIPT, type RedisStoreOptions } from './store/redis-store.js'
export type { RateLimitStore, Decision, WindowState, AdmitRequest, RejectReason, WindowSettings } from './store/types.js'
export { storeKeys, encodeId, type StoreKeys } from './keys.js'
export { InvalidOptionError, InvalidRouteConfigError, AlreadyRegisteredError, StoreReplyError, RATE_LIMITED_CODE } from './errors.js'
