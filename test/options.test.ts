// Options are validated at registration; every error names the option.
import Fastify from 'fastify'
import t from 'tap'
import rateLimiting, { DEFAULT_TIERS, MemoryStore, type RateLimitingOptions } from '../dist/index.js'
import { buildApp } from './helpers/app.js'
import { privateRedis } from './helpers/redis.js'
import { Redis } from 'ioredis'

t.test('the default tiers are the product tiers', async t => {
  t.same(DEFAULT_TIERS, {
    anonymous: { requestsPerMinute: 5, requestsPerHour: 50, concurrentRequests: 5, monthlyQuota: 1000 },
    starter: { requestsPerMinute: 10, requestsPerHour: 100, concurrentRequests: 10, monthlyQuota: 10000 },
    professional: { requestsPerMinute: 50, requestsPerHour: 1000, concurrentRequests: 50, monthlyQuota: 100000 },
    enterprise: { requestsPerMinute: 500, requestsPerHour: 10000, concurrentRequests: 200, monthlyQuota: 1000000 },
    platform_admin: { requestsPerMinute: Infinity, requestsPerHour: Infinity, concurrentRequests: Infinity, monthlyQuota: Infinity }
  })
  t.ok(Object.isFrozen(DEFAULT_TIERS) && Object.isFrozen(DEFAULT_TIERS.starter))
})

t.test('invalid options fail registration naming the option', async t => {
  const cases: Array<[unknown, RegExp]> = [
    [{ keyPrefix: 'has{brace}' }, /options\.keyPrefix/],
    [{ keyPrefix: '' }, /options\.keyPrefix/],
    [{ tiers: { gold: { requestsPerMinute: 5 } } }, /options\.tiers\.gold\.requestsPerHour is required/],
    [{ tiers: { gold: { requestsPerMinute: -5, requestsPerHour: 1, concurrentRequests: 1, monthlyQuota: 1 } } }, /options\.tiers\.gold\.requestsPerMinute must be >= 0/],
    [{ tiers: { 'bad name': { requestsPerMinute: 1, requestsPerHour: 1, concurrentRequests: 1, monthlyQuota: 1 } } }, /options\.tiers: tier name "bad name"/],
    [{ tenantExtractor: 'header' }, /options\.tenantExtractor must be function/],
    [{ redis: { host: 'localhost' } }, /options\.redis must be an ioredis client/],
    [{ store: {} }, /options\.store must be 'memory' or implement RateLimitStore/],
    [{ hook: 'onSend' }, /options\.hook/],
    [{ bucketsPerWindow: 0 }, /options\.bucketsPerWindow must be >= 1/],
    [{ leaseTtlSeconds: 0 }, /options\.leaseTtlSeconds/],
    [{ leaseTtlSeconds: 0.0004 }, /options\.leaseTtlSeconds/], // would round to a lease of 0 ms
    [{ defaultTier: 'gold' }, /options\.defaultTier names unknown tier gold/],
    [{ failMode: 'maybe' }, /options\.failMode/],
    [{ memoryMaxKeys: 0 }, /options\.memoryMaxKeys must be >= 1/],
    [{ memoryMaxKeys: 2.5 }, /options\.memoryMaxKeys must be integer/],
    [{ memoryMaxKeys: Infinity }, /options\.memoryMaxKeys/],
    [{ requestsPerMinute: 5 }, /options\.requestsPerMinute is not a known field/]
  ]
  for (const [options, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(rateLimiting, options as RateLimitingOptions).ready() }, { code: 'FST_MAESTRO_RL_INVALID_OPTION', message }, JSON.stringify(options))
  }
})

t.test('Fastify register options pass through', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { logLevel: 'warn' } as RateLimitingOptions)
  t.equal(app.rateLimitStore.kind, 'memory')
})

t.test('registering twice is refused', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting)
  await t.rejects(async () => { await app.register(rateLimiting).ready() }, { code: 'FST_MAESTRO_RL_ALREADY_REGISTERED' })
})

t.test('with no Redis the memory store is the default; a given store is used and not closed', async t => {
  const app = Fastify()
  await app.register(rateLimiting)
  t.equal(app.rateLimitStore.kind, 'memory')
  await app.close()
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const other = await buildApp(t, { kind: 'memory', options: { store } })
  t.equal(other.rateLimitStore, store)
})

for (const failMode of ['open', 'closed'] as const) {
  t.test(`Redis down: failMode ${failMode}`, async t => {
    const server = await privateRedis(t)
    const redis = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
    redis.on('error', () => {})
    t.teardown(() => redis.disconnect())
    if (redis.status !== 'ready') await new Promise(resolve => redis.once('ready', resolve))
    const app = await buildApp(t, { kind: 'memory', options: { redis, failMode } })
    t.equal((await app.inject({ url: '/' })).statusCode, 200)
    await server.stop()
    const res = await app.inject({ url: '/' })
    if (failMode === 'open') {
      t.equal(res.statusCode, 200, 'admitted')
      t.notOk(res.headers['x-ratelimit-limit-minute'], 'without limit headers it could not compute')
    } else {
      t.equal(res.statusCode, 503)
      t.equal(res.headers['retry-after'], '1')
      t.equal(res.json().code, 'FST_MAESTRO_RL_STORE_UNAVAILABLE')
    }
  })
}
