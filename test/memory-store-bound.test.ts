// The memory store keeps at most maxKeys counters, forgetting the least recently used: traffic from
// ever more clients cannot grow it without bound.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t, { type Test } from 'tap'
import { DEFAULT_TIERS, MemoryStore } from '../dist/index.js'
import { storeKeys } from '../dist/keys.js'
import { buildApp } from './helpers/app.js'
import { privateRedis } from './helpers/redis.js'
import { limits } from './helpers/stores.js'

const anonymous = DEFAULT_TIERS.anonymous
const keysOf = (i: number | string): ReturnType<typeof storeKeys> => storeKeys('bound', 'anonymous', `client-${i}`, undefined)

/** A store on a fixed clock, and a way to admit (and at once release) a request of subject `i`. */
function boundedStore (t: Test, maxKeys: number): { store: MemoryStore, admit: (i: number | string, tier?: typeof anonymous) => Promise<boolean> } {
  const now = Date.UTC(2026, 10, 27, 12, 0, 0)
  const store = new MemoryStore({ maxKeys, clock: () => now })
  t.teardown(() => store.close())
  let lease = 0
  const admit = async (i: number | string, tier = anonymous): Promise<boolean> => {
    const keys = keysOf(i)
    const leaseId = `lease-${++lease}`
    const decision = await store.admit({ keys, cost: 1, limits: tier, leaseId })
    store.release(keys, leaseId)
    return decision.allowed
  }
  return { store, admit }
}

t.test('many subjects: the store stays at its bound and the least recently used go first', async t => {
  const { store, admit } = boundedStore(t, 1000)
  const steady = limits(1000, 10_000, 100_000)
  let largest = 0
  let hotCount = 0
  for (let i = 0; i < 20_000; i++) {
    await admit(i)
    if (i % 100 === 0) { await admit('hot', steady); hotCount++ } // seen often: never the least recent
    largest = Math.max(largest, store.size)
  }
  t.ok(largest <= 1000, `never above the bound (largest ${largest})`)
  t.ok(store.size >= 990, `and close to it (${store.size}): eviction takes a hundredth at a time`)
  t.equal(store.maxKeys, 1000)

  for (let i = 19_100; i < 20_000; i += 37) {
    t.match(await store.usage(keysOf(i)), { minute: 1, hour: 1, month: 1 }, `recent subject ${i} keeps its exact counts`)
  }
  t.match(await store.usage(keysOf('hot')), { minute: hotCount, hour: hotCount, month: hotCount }, 'a subject in steady use is never evicted')
  t.match(await store.usage(keysOf(0)), { minute: 0, hour: 0, month: 0 }, 'the oldest was forgotten')
  t.equal(await admit(0), true, 'and starts afresh')
})

t.test('a subject with requests running keeps its leases through any churn', async t => {
  const { store, admit } = boundedStore(t, 100)
  const busy = keysOf('busy')
  const one = limits(Infinity, Infinity, Infinity, 1)
  t.equal((await store.admit({ keys: busy, cost: 1, limits: one, leaseId: 'running' })).allowed, true)
  for (let i = 0; i < 1000; i++) await admit(i)
  t.match(await store.admit({ keys: busy, cost: 1, limits: one, leaseId: 'second' }), { allowed: false, reason: 'concurrent_limit_exceeded' })
  t.equal(store.size, 101, '100 counters and the one lease set of the request still running')
  store.release(busy, 'running')
  t.equal(store.size, 100, 'a lease set goes with its last lease')
})

t.test('heap stays bounded under a stream of distinct clients', async t => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const heap = (): number => { gc(); gc(); return process.memoryUsage().heapUsed }
  const { store, admit } = boundedStore(t, 10_000)
  for (let i = 0; i < 10_000; i++) await admit(i) // full: what follows only replaces
  const full = heap()
  for (let i = 10_000; i < 200_000; i++) await admit(i)
  const grown = (heap() - full) / 1e6
  t.ok(store.size <= 10_000 && store.size >= 9_900, `${store.size} counters kept`)
  // Unbounded, 190,000 more clients took about 1 KB each: some 190 MB.
  t.ok(grown < 20, `190,000 more clients grew the heap by ${grown.toFixed(1)} MB`)
})

t.test('maxKeys must be a whole number >= 1', async t => {
  for (const maxKeys of [0, -1, 1.5, NaN, Infinity]) {
    t.throws(() => new MemoryStore({ maxKeys }), { name: 'RangeError', message: /maxKeys must be a whole number >= 1/ }, String(maxKeys))
  }
  const store = new MemoryStore()
  t.teardown(() => store.close())
  t.equal(store.maxKeys, 100_000, 'default')
})

t.test('the plugin bounds its memory store with memoryMaxKeys', async t => {
  const app = await buildApp(t, { kind: 'memory', options: { memoryMaxKeys: 50 } })
  const store = app.rateLimitStore as MemoryStore
  t.equal(store.maxKeys, 50)
  for (let i = 0; i < 200; i++) t.equal((await app.inject({ url: '/', remoteAddress: `198.51.100.${i}` })).statusCode, 200)
  t.ok(store.size <= 50, `${store.size} counters kept`)
  const recent = await app.inject({ url: '/', remoteAddress: '198.51.100.199' })
  t.equal(recent.headers['x-ratelimit-remaining-minute'], '3', 'the most recent client keeps its count')
})

t.test('the local fallback is bounded by memoryMaxKeys too', async t => {
  const server = await privateRedis(t)
  const { Redis } = await import('ioredis')
  const redis = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  const app = await buildApp(t, { kind: 'memory', options: { redis, localFallback: true, memoryMaxKeys: 20 } })
  await server.stop()
  for (let i = 0; i < 100; i++) {
    const res = await app.inject({ url: '/', remoteAddress: `203.0.113.${i}` })
    t.equal(res.headers['x-ratelimit-status'], 'degraded', 'decided by the fallback')
  }
  const { fallback } = app.rateLimitStore as unknown as { fallback: MemoryStore }
  t.equal(fallback.maxKeys, 20)
  t.ok(fallback.size <= 20, `${fallback.size} counters kept by the fallback`)
})
