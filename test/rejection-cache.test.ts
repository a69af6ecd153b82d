// A subject over its limit is answered locally, with no Redis call, until capacity frees, and any
// policy change or usage reset lifts that at once.
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { buildApp, headerTenant } from './helpers/app.js'
import { commandCalls, privateRedis } from './helpers/redis.js'

async function scriptCalls (redis: Redis): Promise<number> {
  const calls = await commandCalls(redis)
  return (calls.evalsha ?? 0) + (calls.eval ?? 0)
}

t.test('rejections are answered locally until capacity frees', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const app = await buildApp(t, { kind: 'memory', options: { redis, tenantExtractor: headerTenant } }, app => {
    app.get('/', async () => 'ok')
    app.get('/big', { config: { rateLimit: { cost: 3 } } }, async () => 'ok')
  })
  const headers = { 'x-tenant': 'acme', 'x-tier': 'starter' }
  for (let i = 0; i < 8; i++) await app.inject({ url: '/', headers })
  const big = await app.inject({ url: '/big', headers })
  t.equal(big.statusCode, 429, 'cost 3 does not fit in the 2 left')
  const first = await app.inject({ url: '/', headers })
  t.equal(first.statusCode, 200, 'a cheaper request is not held back by the cached rejection of a dearer one')
  await app.inject({ url: '/', headers })
  const rejected = await app.inject({ url: '/', headers })
  t.equal(rejected.statusCode, 429)
  const before = await scriptCalls(redis)
  let last = rejected
  for (let i = 0; i < 50; i++) last = await app.inject({ url: '/', headers })
  t.equal(await scriptCalls(redis), before, 'fifty more rejections, no Redis call')
  t.equal(last.statusCode, 429)
  t.equal(last.headers['x-ratelimit-error'], 'rate_limit_exceeded')
  t.ok(Number(last.headers['retry-after']) <= Number(rejected.headers['retry-after']), 'Retry-After counts down')
  t.equal(last.headers['x-ratelimit-remaining-minute'], '0')

  await app.policies.setTenantOverride('acme', { requestsPerMinute: 20 })
  t.equal((await app.inject({ url: '/', headers })).statusCode, 200, 'a raised limit applies at once')
})

t.test('a usage reset on another instance lifts cached rejections', async t => {
  const server = await privateRedis(t)
  const make = async (): Promise<Awaited<ReturnType<typeof buildApp>>> => {
    const redis = new Redis(server.url)
    t.teardown(() => redis.disconnect())
    return await buildApp(t, { kind: 'memory', keyPrefix: 'shared', options: { redis, tenantExtractor: headerTenant } })
  }
  const a = await make()
  const b = await make()
  const headers = { 'x-tenant': 'acme', 'x-tier': 'starter' }
  for (let i = 0; i < 11; i++) await a.inject({ url: '/', headers })
  t.equal((await a.inject({ url: '/', headers })).statusCode, 429)
  await b.policies.resetUsage('acme')
  const start = Date.now()
  let status = 429
  while (status === 429 && Date.now() - start < 1000) {
    status = (await a.inject({ url: '/', headers })).statusCode
    if (status === 429) await sleep(5)
  }
  t.equal(status, 200, `admitted again ${Date.now() - start} ms after the reset`)
})

t.test('a cached rejection holds only for the limits that produced it', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const app = await buildApp(t, {
    kind: 'memory',
    options: {
      redis,
      tenantExtractor: headerTenant,
      tiers: {
        small: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: null, monthlyQuota: 3 },
        big: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: null, monthlyQuota: 1000 }
      }
    }
  }, app => {
    app.get('/', async () => 'ok')
    app.get('/strict', { config: { rateLimit: { bucket: 'search', limits: { requestsPerMinute: 2 } } } }, async () => 'strict')
    app.get('/lenient', { config: { rateLimit: { bucket: 'search', limits: { requestsPerMinute: 50 } } } }, async () => 'lenient')
  })
  const small = { 'x-tenant': 'acme', 'x-tier': 'small' }
  for (let i = 0; i < 3; i++) t.equal((await app.inject({ url: '/', headers: small })).statusCode, 200)
  const spent = await app.inject({ url: '/', headers: small })
  t.equal(spent.statusCode, 429)
  t.equal(spent.headers['x-ratelimit-error'], 'quota_exceeded')
  t.equal((await app.inject({ url: '/', headers: small })).statusCode, 429, 'answered from the cache')
  const upgraded = await app.inject({ url: '/', headers: { 'x-tenant': 'acme', 'x-tier': 'big' } })
  t.equal(upgraded.statusCode, 200, 'a tenant whose tier was raised is admitted at once')
  t.equal(upgraded.headers['x-ratelimit-remaining-month'], '996')

  const headers = { 'x-tenant': 'globex', 'x-tier': 'big' }
  t.equal((await app.inject({ url: '/strict', headers })).statusCode, 200)
  t.equal((await app.inject({ url: '/strict', headers })).statusCode, 200)
  t.equal((await app.inject({ url: '/strict', headers })).statusCode, 429, 'the strict route is full')
  t.equal((await app.inject({ url: '/strict', headers })).statusCode, 429)
  const lenient = await app.inject({ url: '/lenient', headers })
  t.equal(lenient.statusCode, 200, 'a lenient route of the same bucket is not refused with the strict one')
  t.equal(lenient.headers['x-ratelimit-remaining-minute'], '47')
})

t.test('a route\'s own monthly cap: its rejections are cached, and never served to another route of the bucket', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const app = await buildApp(t, { kind: 'memory', options: { redis, tenantExtractor: headerTenant } }, app => {
    app.get('/plain', { config: { rateLimit: { bucket: 'exports', limits: { requestsPerMinute: 3 } } } }, async () => 'plain')
    app.get('/capped', { config: { rateLimit: { bucket: 'exports', limits: { requestsPerMinute: 3, monthlyQuota: 1 } } } }, async () => 'capped')
  })
  const headers = { 'x-tenant': 'acme', 'x-tier': 'starter' }
  t.equal((await app.inject({ url: '/capped', headers })).statusCode, 200)
  const capped = await app.inject({ url: '/capped', headers })
  t.equal(capped.headers['x-ratelimit-error'], 'quota_exceeded', 'the route\'s month is spent')
  const before = await scriptCalls(redis)
  for (let i = 0; i < 20; i++) t.equal((await app.inject({ url: '/capped', headers })).statusCode, 429)
  t.equal(await scriptCalls(redis), before, 'twenty more rejections by the cap, no Redis call')

  for (let i = 0; i < 2; i++) t.equal((await app.inject({ url: '/plain', headers })).statusCode, 200)
  const full = await app.inject({ url: '/plain', headers })
  t.equal(full.headers['x-ratelimit-error'], 'rate_limit_exceeded', 'the bucket\'s minute is full (3)')
  t.equal((await app.inject({ url: '/plain', headers })).statusCode, 429, 'and cached')
  const again = await app.inject({ url: '/capped', headers })
  t.equal(again.headers['x-ratelimit-error'], 'quota_exceeded', 'the capped route is not answered with the plain route\'s rejection')
  t.equal(again.headers['x-ratelimit-limit-month'], '1')
})
