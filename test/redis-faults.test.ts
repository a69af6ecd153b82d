// Redis trouble under traffic, with a private redis-server that the test kills, restarts and
// pauses: no crash, no unhandled rejection (tap fails the test on one), no request waiting past the
// deadline, counters right and no lease left behind once Redis is back.
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import t from 'tap'
import rateLimiting from '../dist/index.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { privateRedis, freePort, type PrivateRedis } from './helpers/redis.js'

const TIERS = { busy: { requestsPerMinute: 100_000, requestsPerHour: null, concurrentRequests: 50, monthlyQuota: null } }
const tenant = { 'x-tenant': 'acme', 'x-tier': 'busy' }

interface Traffic { statuses: Map<number, number>, maxMs: number, count: number, degraded: number }

/** `workers` loops of requests for `ms` milliseconds. */
async function traffic (app: Awaited<ReturnType<typeof buildApp>>, ms: number, workers = 8): Promise<Traffic> {
  const result: Traffic = { statuses: new Map(), maxMs: 0, count: 0, degraded: 0 }
  const until = Date.now() + ms
  await Promise.all(Array.from({ length: workers }, async () => {
    while (Date.now() < until) {
      const started = Date.now()
      const res = await app.inject({ url: '/work', headers: tenant })
      result.maxMs = Math.max(result.maxMs, Date.now() - started)
      result.count++
      result.statuses.set(res.statusCode, (result.statuses.get(res.statusCode) ?? 0) + 1)
      if (res.headers['x-ratelimit-status'] === 'degraded') result.degraded++
    }
  }))
  return result
}

async function appOn (t: Parameters<typeof buildApp>[0], server: PrivateRedis, options = {}): Promise<{ app: Awaited<ReturnType<typeof buildApp>>, redis: Redis }> {
  const redis = new Redis(server.url) // ioredis defaults: offline queue on, reconnecting forever
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  const app = await buildApp(t, {
    kind: 'memory',
    options: { redis, tenantExtractor: headerTenant, tiers: TIERS, storeTimeoutMs: 100, breakerCooldownSeconds: 0.2, metrics: false, ...options }
  }, app => {
    app.get('/work', async () => { await sleep(2); return 'ok' })
  })
  return { app, redis }
}

async function leaseCount (redis: Redis): Promise<number> {
  const keys = await redis.keys('*:c')
  let total = 0
  for (const key of keys) total += await redis.hlen(key)
  return total
}

async function waitUntil (condition: () => Promise<boolean>, ms: number): Promise<boolean> {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await condition()) return true
    await sleep(25)
  }
  return false
}

t.test('Redis killed and restarted during traffic', async t => {
  const server = await privateRedis(t)
  const { app, redis } = await appOn(t, server)
  const during = traffic(app, 1500)
  await sleep(300)
  await server.stop()
  await sleep(500)
  await server.restart()
  const result = await during
  t.equal(result.statuses.get(500) ?? 0, 0, 'no failures')
  t.same([...result.statuses.keys()], [200], `every request served (${result.count})`)
  t.ok(result.maxMs < 600, `no request waited past the deadline (max ${result.maxMs} ms)`)
  t.ok(result.degraded > 0, `requests during the outage were marked degraded (${result.degraded})`)
  t.ok(await waitUntil(async () => redis.status === 'ready', 3000), 'the client reconnected')
  // Fresh server: counters start again, exactly.
  t.ok(await waitUntil(async () => (await app.inject({ url: '/work', headers: tenant })).headers['x-ratelimit-status'] === undefined, 3000), 'decisions come from Redis again')
  const before = await app.policies.usage('acme')
  for (let i = 0; i < 5; i++) await app.inject({ url: '/work', headers: tenant })
  const after = await app.policies.usage('acme')
  t.equal(after.minute.used - before.minute.used, 5, 'every request after recovery counted once')
  t.ok(await waitUntil(async () => await leaseCount(redis) === 0, 1000), 'no lease left behind (releases go out within milliseconds)')
})

t.test('Redis paused (SIGSTOP) during traffic: bounded waits, breaker, nothing leaked after', async t => {
  const server = await privateRedis(t)
  const { app, redis } = await appOn(t, server)
  await app.inject({ url: '/work', headers: tenant })
  const during = traffic(app, 1500)
  await sleep(300)
  server.pause()
  await sleep(600)
  server.resume()
  const result = await during
  t.same([...result.statuses.keys()], [200], `every request served (${result.count})`)
  t.ok(result.maxMs < 600, `no request waited past the deadline (max ${result.maxMs} ms)`)
  t.ok(await waitUntil(async () => await leaseCount(redis) === 0, 3000), 'leases granted late or released during the pause are all given back')
  const before = await app.policies.usage('acme')
  for (let i = 0; i < 5; i++) await app.inject({ url: '/work', headers: tenant })
  t.equal((await app.policies.usage('acme')).minute.used - before.minute.used, 5, 'counting is exact again')
})

t.test('the circuit breaker stops paying the deadline on every request', async t => {
  const server = await privateRedis(t)
  // A cooldown longer than the loop below: no probe (which waits for the deadline) falls inside it.
  const { app } = await appOn(t, server, { breakerThreshold: 3, breakerCooldownSeconds: 2 })
  await app.inject({ url: '/work', headers: tenant })
  server.pause()
  t.teardown(() => server.resume())
  const slow = []
  for (let i = 0; i < 3; i++) {
    const started = Date.now()
    await app.inject({ url: '/work', headers: tenant })
    slow.push(Date.now() - started)
  }
  t.ok(slow.every(ms => ms >= 90), `the first failures wait for the deadline (${slow.join(', ')} ms)`)
  const fast = []
  for (let i = 0; i < 20; i++) {
    const started = Date.now()
    const res = await app.inject({ url: '/work', headers: tenant })
    t.equal(res.headers['x-ratelimit-status'], 'degraded')
    fast.push(Date.now() - started)
  }
  // Judged by the median (a loaded test machine can stall any single request) and by the deadline.
  const median = [...fast].sort((a, b) => a - b)[Math.floor(fast.length / 2)]
  t.ok(median < 20 && Math.max(...fast) < 90, `then the open breaker answers at once (median ${median} ms, max ${Math.max(...fast)} ms)`)
  server.resume()
  t.ok(await waitUntil(async () => (await app.inject({ url: '/work', headers: tenant })).headers['x-ratelimit-status'] === undefined, 5000), 'a probe after the cooldown closes it again')
})

t.test('local fallback keeps limits roughly enforced while Redis is gone', async t => {
  const server = await privateRedis(t)
  const registry = new Registry()
  const { app } = await appOn(t, server, { localFallback: { share: 1 }, tenantExtractor: undefined, metrics: { registry } })
  t.equal((await app.inject({ url: '/work' })).statusCode, 200)
  await server.stop()
  const codes = []
  for (let i = 0; i < 7; i++) {
    const res = await app.inject({ url: '/work' })
    codes.push(res.statusCode)
    t.equal(res.headers['x-ratelimit-status'], 'degraded')
  }
  t.same(codes, [200, 200, 200, 200, 200, 429, 429], 'the anonymous limit of 5, held in memory')
  const counts = [...(await registry.metrics()).matchAll(/^rate_limit_decision_duration_seconds_count\{store="(\w+)"\} (\d+)$/gm)].map(m => `${m[1]} ${m[2]}`)
  t.same(counts.sort(), ['fallback 7', 'redis 1'], 'decision latency: the fallback\'s decisions under their own label, not as Redis\'s')
})

t.test('Redis down at boot: the service boots; open admits, closed refuses, until Redis is back', async t => {
  const port = await freePort()
  for (const failMode of ['open', 'closed'] as const) {
    const redis = new Redis(port, '127.0.0.1')
    redis.on('error', () => {})
    t.teardown(() => redis.disconnect())
    const started = Date.now()
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(rateLimiting, { redis, failMode, metrics: false })
    app.get('/', async () => 'ok')
    await app.ready()
    t.ok(Date.now() - started < 4000, `${failMode}: booted in ${Date.now() - started} ms`)
    const res = await app.inject({ url: '/' })
    t.equal(res.statusCode, failMode === 'open' ? 200 : 503, `${failMode}: ${res.statusCode}`)
  }
  const server = await privateRedis(t, [], port)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { redis, failMode: 'closed', metrics: false })
  app.get('/', async () => 'ok')
  t.ok(await waitUntil(async () => (await app.inject({ url: '/' })).statusCode === 200, 3000), 'decisions resume once Redis answers (the script loads lazily)')
})

t.test('requireStoreAtBoot makes boot fail fast instead', async t => {
  const port = await freePort()
  const redis = new Redis(port, '127.0.0.1', { maxRetriesPerRequest: 1 })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(rateLimiting, { redis, requireStoreAtBoot: true, metrics: false }).ready() }, { code: 'FST_MAESTRO_RL_STORE_UNAVAILABLE_AT_BOOT' })
})

t.test('closing the store fails the decisions still waiting for a hung Redis, at once', async t => {
  const { RedisStore } = await import('../dist/index.js')
  const { storeKeys } = await import('../dist/keys.js')
  const { ResilientStore, StoreUnavailableError } = await import('../dist/store/resilient-store.js')
  const server = await privateRedis(t)
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const store = new ResilientStore(new RedisStore({ client, timeoutMs: 60_000 }), { breakerThreshold: 5, breakerCooldownMs: 1000, fallbackShare: undefined })
  const limits = { requestsPerMinute: 10, requestsPerHour: 100, concurrentRequests: 10, monthlyQuota: 1000 }
  const keys = storeKeys('p', 'tenant', 'closing', undefined)
  await client.ping()
  await store.admit({ keys, cost: 1, limits, leaseId: 'warm' }) // loads the script
  server.pause()
  t.teardown(() => server.resume())
  const waiting = store.admit({ keys, cost: 1, limits, leaseId: 'hung' })
  await sleep(50)
  const started = Date.now()
  const failed = t.rejects(waiting, StoreUnavailableError, 'failed, not left waiting for the 60 s deadline')
  await store.close()
  await failed
  t.ok(Date.now() - started < 1000, 'at once')
})
