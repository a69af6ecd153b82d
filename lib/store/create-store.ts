// Chooses the store: a given store, else Redis (the `redis` option, else `fastify.redis`), else memory.
import type { FastifyInstance } from 'fastify'
import type { ResolvedOptions } from '../options.js'
import type { RedisClient } from './lua-script.js'
import { MemoryStore } from './memory-store.js'
import { RedisStore } from './redis-store.js'
import { ResilientStore } from './resilient-store.js'
import { withDeadline } from '../deadline.js'
import { StoreUnavailableAtBootError } from '../errors.js'
import type { RateLimitStore } from './types.js'

export interface ChosenStore {
  readonly store: RateLimitStore
  /** Whether the plugin created the store (and so closes it). */
  readonly owned: boolean
  /** The Redis client behind the store, when there is one (dynamic policies use it too). */
  readonly redis: RedisClient | undefined
}

export function createStore (options: ResolvedOptions, fastify: FastifyInstance): ChosenStore {
  if (options.store !== undefined) {
    return { store: options.store, owned: false, redis: options.store instanceof RedisStore ? options.store.client : options.redis }
  }
  const settings = { bucketsPerWindow: options.bucketsPerWindow, leaseTtlMs: options.leaseTtlMs }
  const memory = { ...settings, maxKeys: options.memoryMaxKeys }
  const client = options.redis ?? fastifyRedis(fastify)
  if (client === undefined) return { store: new MemoryStore(memory), owned: true, redis: undefined }
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
  return { store, owned: true, redis: client }
}

/** Fails registration unless Redis answers a PING within two seconds. */
export async function requireRedis (client: RedisClient): Promise<void> {
  try {
    await withDeadline(client.ping(), 2000, 'Redis PING')
  } catch (err) {
    throw new StoreUnavailableAtBootError((err as Error).message)
  }
}

/** The client @fastify/redis decorated, when there is one (and it is a client, not a namespace map). */
function fastifyRedis (fastify: FastifyInstance): RedisClient | undefined {
  if (!fastify.hasDecorator('redis')) return undefined
  const candidate = (fastify as unknown as { redis: unknown }).redis
  return typeof (candidate as { evalsha?: unknown })?.evalsha === 'function' ? candidate as RedisClient : undefined
}
