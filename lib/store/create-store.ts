// Chooses the store: the `store` option (an instance, or 'memory'), else Redis (the `redis` option, a
// client or a URL, else `fastify.redis`), else memory. Memory nobody asked for is reported: behind a
// load balancer it multiplies every limit by the number of instances.
import type { FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import type { ResolvedOptions } from '../options.js'
import type { RedisClient } from './lua-script.js'
import { MemoryStore } from './memory-store.js'
import { RedisStore } from './redis-store.js'
import { ResilientStore } from './resilient-store.js'
import { createOwnedRedis } from './owned-redis.js'
import { withDeadline } from '../deadline.js'
import { RedisNotUsedError, StoreUnavailableAtBootError } from '../errors.js'
import type { RateLimitStore } from './types.js'

/** Where the store came from: the log line at boot and the check at ready depend on it. */
export type StoreSource = 'store option' | 'redis option' | 'redis url' | 'fastify.redis' | 'memory option' | 'default'

export interface ChosenStore {
  readonly store: RateLimitStore
  readonly source: StoreSource
  /** Whether the plugin created the store (and so closes it). */
  readonly owned: boolean
  /** The Redis client behind the store, when there is one (dynamic policies use it too). */
  readonly redis: RedisClient | undefined
  /** The client the plugin created from a URL; closed last, after everything that uses it. */
  readonly ownedClient: Redis | undefined
}

export function createStore (options: ResolvedOptions, fastify: FastifyInstance): ChosenStore {
  const settings = {
    bucketsPerWindow: options.bucketsPerWindow,
    leaseTtlMs: options.leaseTtlMs,
    alertThresholds: options.quotaAlerts === false ? [] : options.quotaAlerts.thresholds,
    usageRetentionMonths: options.usageRetentionMonths
  }
  const memory = { ...settings, maxKeys: options.memoryMaxKeys }
  const given = options.store
  if (given === 'memory') return { store: new MemoryStore(memory), source: 'memory option', owned: true, redis: undefined, ownedClient: undefined }
  if (given !== undefined) {
    const redis = given instanceof RedisStore ? given.client : options.redis
    return { store: given, source: 'store option', owned: false, redis, ownedClient: undefined }
  }

  const ownedClient = options.redisUrl === undefined ? undefined : createOwnedRedis(options.redisUrl, fastify.log)
  const client = ownedClient ?? options.redis ?? fastifyRedis(fastify)
  if (client === undefined) return { store: new MemoryStore(memory), source: 'default', owned: true, redis: undefined, ownedClient: undefined }
  const store = new ResilientStore(new RedisStore({ client, ...settings, timeoutMs: options.storeTimeoutMs }), {
    breakerThreshold: options.breakerThreshold,
    breakerCooldownMs: options.breakerCooldownMs,
    fallbackShare: options.fallbackShare,
    fallbackSettings: memory,
    onStateChange: (state, cause, node) => {
      const where = node === '' ? 'Redis' : `Redis Cluster node ${node}`
      if (state === 'open') fastify.log.error({ err: cause, node }, 'rate limiting: %s failing, circuit open (its decisions use failMode%s)', where, options.fallbackShare === undefined ? '' : ' and the local fallback')
      else fastify.log.info({ node }, 'rate limiting: %s answers again, circuit closed', where)
    }
  })
  const source = ownedClient !== undefined ? 'redis url' : options.redis !== undefined ? 'redis option' : 'fastify.redis'
  return { store, source, owned: true, redis: client, ownedClient }
}

/** Says which store decides, at `warn` when it is memory nobody chose. */
export function reportStore ({ store, source }: ChosenStore, fastify: FastifyInstance): void {
  if (source !== 'default') {
    fastify.log.info({ store: store.kind, source }, 'rate limiting: using the %s store (%s)', store.kind, source)
    return
  }
  fastify.log.warn({ store: store.kind, source },
    'rate limiting: no Redis given, so the in-memory store decides: each instance enforces its own limits. ' +
    'Pass `redis` (a client or a URL) or register @fastify/redis before the plugin; `store: \'memory\'` chooses memory on purpose and silences this')
}

/**
 * Fails boot when the plugin fell back to memory while `fastify.redis` is there: a namespace map at
 * registration, or a client decorated after the plugin (checked again when the app is ready).
 */
export function refuseUnusedRedis (fastify: FastifyInstance, source: StoreSource, when: 'registration' | 'ready'): void {
  if (source !== 'default' || !fastify.hasDecorator('redis')) return
  throw new RedisNotUsedError(when === 'registration'
    ? 'fastify.redis is not an ioredis client (@fastify/redis registered with a namespace? pass that client as `redis: fastify.redis.<namespace>`)'
    : 'fastify.redis was decorated after @maestro/rate-limiting was registered')
}

/** Fails registration unless Redis answers a PING within two seconds; a client of the plugin's own is then closed. */
export async function requireRedis ({ redis: client, ownedClient }: ChosenStore): Promise<void> {
  if (client === undefined) return
  try {
    await withDeadline(client.ping(), 2000, 'Redis PING')
  } catch (err) {
    ownedClient?.disconnect()
    throw new StoreUnavailableAtBootError((err as Error).message)
  }
}

/** The client @fastify/redis decorated, when there is one (and it is a client, not a namespace map). */
function fastifyRedis (fastify: FastifyInstance): RedisClient | undefined {
  if (!fastify.hasDecorator('redis')) return undefined
  const candidate = (fastify as unknown as { redis: unknown }).redis
  return typeof (candidate as { evalsha?: unknown })?.evalsha === 'function' ? candidate as RedisClient : undefined
}
