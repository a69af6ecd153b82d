// Chooses the store: a given store, else Redis (the `redis` option, else `fastify.redis`), else memory.
import type { FastifyInstance } from 'fastify'
import type { ResolvedOptions } from '../options.js'
import type { RedisClient } from './lua-script.js'
import { MemoryStore } from './memory-store.js'
import { RedisStore } from './redis-store.js'
import type { RateLimitStore } from './types.js'

export function createStore (options: ResolvedOptions, fastify: FastifyInstance): { store: RateLimitStore, owned: boolean } {
  if (options.store !== undefined) return { store: options.store, owned: false }
  const settings = { bucketsPerWindow: options.bucketsPerWindow, leaseTtlMs: options.leaseTtlMs }
  const client = options.redis ?? fastifyRedis(fastify)
  if (client !== undefined) return { store: new RedisStore({ client, ...settings }), owned: true }
  return { store: new MemoryStore(settings), owned: true }
}

/** The client @fastify/redis decorated, when there is one (and it is a client, not a namespace map). */
function fastifyRedis (fastify: FastifyInstance): RedisClient | undefined {
  if (!fastify.hasDecorator('redis')) return undefined
  const candidate = (fastify as unknown as { redis: unknown }).redis
  return typeof (candidate as { evalsha?: unknown })?.evalsha === 'function' ? candidate as RedisClient : undefined
}
