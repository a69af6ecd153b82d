// The two stores under one roof, so conformance tests run the same body against both.
import type { Redis } from 'ioredis'
import { MemoryStore, RedisStore, type RateLimitStore, type StoreKeys, type TierLimits } from '../../dist/index.js'
import { storeKeys } from '../../dist/keys.js'
import { sharedRedis, uniquePrefix } from './redis.js'

export interface Clock { now: number }

export interface StoreUnderTest {
  readonly store: RateLimitStore
  readonly clock: Clock
  readonly prefix: string
  readonly redis: Redis | undefined
  keys (id: string, bucket?: string): StoreKeys
}

interface Teardown { teardown (fn: () => unknown): void }

export type StoreKind = 'memory' | 'redis'
export const STORE_KINDS: StoreKind[] = ['memory', 'redis']

/** A store whose time is `clock.now` (both stores accept a clock for replays and tests). */
export function makeStore (t: Teardown, kind: StoreKind, settings: { bucketsPerWindow?: number, leaseTtlMs?: number } = {}): StoreUnderTest {
  const clock: Clock = { now: Date.UTC(2026, 10, 27, 12, 0, 0) }
  const redis = kind === 'redis' ? sharedRedis(t) : undefined
  const prefix = uniquePrefix(t, redis)
  const store: RateLimitStore = kind === 'redis'
    ? new RedisStore({ client: redis as Redis, clock: () => clock.now, ...settings })
    : new MemoryStore({ clock: () => clock.now, ...settings })
  t.teardown(() => store.close())
  return { store, clock, prefix, redis, keys: (id, bucket) => storeKeys(prefix, 'tenant', id, bucket) }
}

export function limits (minute: number, hour = Infinity, month = Infinity, concurrent = Infinity): TierLimits {
  return { requestsPerMinute: minute, requestsPerHour: hour, monthlyQuota: month, concurrentRequests: concurrent }
}
