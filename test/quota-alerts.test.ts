// Quota alerts: each threshold fires once per subject, bucket and month, however many instances race
// across it; a quota that changes re-arms only what its count has not reached; events reach onAlert
// and the stream, and one whose append failed is appended by the sweep.
import { request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import rateLimiting, { type QuotaAlertEvent, type RateLimitingOptions } from '../dist/index.js'
import { AlertPublisher } from '../dist/alerts/alert-publisher.js'
import { AlertSweep } from '../dist/alerts/alert-sweep.js'
import { storeKeys } from '../dist/keys.js'
import { limits, makeStore, STORE_KINDS } from './helpers/stores.js'
import { privateRedis, sharedRedis, uniquePrefix } from './helpers/redis.js'
import { Redis as RedisClient } from 'ioredis'
import { listen } from './helpers/app.js'
import { within } from './helpers/wait.js'

const QUOTA = { requestsPerMinute: 100_000, requestsPerHour: null, concurrentRequests: null, monthlyQuota: 250 }

const extractor: RateLimitingOptions['tenantExtractor'] = request => {
  const tenantId = request.headers['x-tenant']
  if (typeof tenantId !== 'string') return null
  const org = request.headers['x-org']
  return { tenantId, tier: 'metered', organizationId: typeof org === 'string' ? org : undefined, organizationTier: 'metered' }
}

async function get (port: number, headers: Record<string, string>): Promise<number> {
  return await new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/', headers, agent: false }, res => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store: thresholds cross once; a changed quota re-arms only what it has not reached`, async t => {
    const s = makeStore(t, kind, { alertThresholds: [0.5, 0.8, 1] } as never)
    const keys = s.keys('acme')
    const crossed: string[] = []
    const admit = async (quota: number, cost = 1): Promise<void> => {
      const d = await s.store.admit({ keys, cost, limits: limits(Infinity, Infinity, quota), leaseId: '', keepUsage: true })
      for (const c of d.crossings ?? []) crossed.push(`${c.threshold}@${c.quota}:${c.used}`)
    }
    for (let i = 0; i < 10; i++) await admit(10)
    t.same(crossed, ['0.5@10:5', '0.8@10:8', '1@10:10'], 'each once, at the admission that reached it')
    // Raised to 20: 0.5 of 20 is 10, reached already and fired at 10 before: not again; 0.8 (16) and 1 (20) re-armed.
    crossed.length = 0
    for (let i = 0; i < 10; i++) await admit(20)
    t.same(crossed, ['0.8@20:16', '1@20:20'])
    // Lowered to 18: every threshold is reached at 18 already; they fired at another quota: none again.
    crossed.length = 0
    await admit(100)
    await admit(18, 0)
    t.same(crossed, [], 'a quota lowered under the count does not fire what was told already')
    // Anonymous clients keep no usage record and cross nothing.
    const anon = await s.store.admit({ keys: storeKeys(s.prefix, 'anonymous', '10.0.0.1', undefined), cost: 10, limits: limits(Infinity, Infinity, 10), leaseId: '' })
    t.equal(anon.crossings, undefined)
  })
}

t.test('the usage record of a month holds the count, the quota and the pending marks (Redis)', async t => {
  const s = makeStore(t, 'redis', { alertThresholds: [0.5] } as never)
  const keys = s.keys('acme')
  for (let i = 0; i < 3; i++) await s.store.admit({ keys, cost: 2, limits: limits(Infinity, Infinity, 10), leaseId: '', keepUsage: true })
  const record = await (s.redis as Redis).hgetall(`${s.prefix}:v1:{t:acme}:usage:202611`)
  t.same(record, { q: '6', quota: '10', 'p:q:0.5': `6:10:${s.clock.now}` })
  const ttl = await (s.redis as Redis).pttl(`${s.prefix}:v1:{t:acme}:usage:202611`)
  const end = Date.UTC(2026, 11, 1)
  t.ok(Math.abs(ttl - (end + 3 * 31 * 86_400_000 - s.clock.now)) < 1000, 'kept three months (of 31 days) past the month')
})

/** Two instances on one Redis prefix, alerts collected from both. */
async function twoInstances (t: Test, extra: Partial<RateLimitingOptions> = {}): Promise<{ apps: FastifyInstance[], prefix: string, events: QuotaAlertEvent[], redis: Redis }> {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const events: QuotaAlertEvent[] = []
  const apps = []
  for (let i = 0; i < 2; i++) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(rateLimiting, {
      redis: sharedRedis(t),
      keyPrefix: prefix,
      tenantExtractor: extractor,
      tiers: { metered: QUOTA },
      quotaAlerts: { onAlert: event => events.push(event) },
      ...extra
    })
    app.get('/', async () => 'ok')
    await app.ready()
    apps.push(app)
  }
  return { apps, prefix, events, redis }
}

t.test('300 parallel requests over two instances: 0.8, 0.9 and 1.0 each fire exactly once, to onAlert and the stream', async t => {
  const { apps, prefix, events, redis } = await twoInstances(t)
  const ports = await Promise.all(apps.map(listen))
  const codes = await Promise.all(Array.from({ length: 300 }, async (_, i) => await get(ports[i % 2], { 'x-tenant': 'acme', 'x-org': 'globex' })))
  t.equal(codes.filter(c => c === 200).length, 250, 'the quota admits 250')
  const tenant = events.filter(e => e.scope === 'tenant')
  t.same(tenant.map(e => [e.threshold, e.used, e.quota]).sort(), [[0.8, 200, 250], [0.9, 225, 250], [1, 250, 250]])
  t.same(events.filter(e => e.scope === 'organization').map(e => [e.tenantId, e.threshold]).sort(), [['globex', 0.8], ['globex', 0.9], ['globex', 1]], 'the organization too')
  const month = new Date().toISOString().slice(0, 7)
  t.match(tenant[0], { tenantId: 'acme', tier: 'metered', bucket: null, month })
  t.equal(tenant[0].id, `${month}:tenant:acme:-:${tenant[0].threshold}:250`)
  t.ok(await within(2000, async () => await redis.xlen(`${prefix}:events`) === 6) < Infinity, 'six events in the stream')
  const entries = await redis.xrange(`${prefix}:events`, '-', '+')
  t.same(entries.map(([, fields]) => JSON.parse(fields[3]).id).sort(), events.map(e => e.id).sort(), 'the stream holds the same events, id and all')
  const usageKey = `${prefix}:v1:{o:globex}:t:acme/usage:${month.replace('-', '')}`
  t.ok(await within(3000, async () => (await redis.hget(usageKey, 'id')) === 'acme') < Infinity, 'the record is named (a batched write)')
  const record = await redis.hgetall(usageKey)
  t.match(record, { id: 'acme', scope: 'tenant', tier: 'metered', q: '250', quota: '250' })
  t.same(Object.keys(record).filter(f => f.startsWith('p:')), [], 'no pending mark left once appended')
})

t.test('an event whose append failed stays pending, and the sweep appends it (at least once, same id)', async t => {
  const { apps, prefix, events, redis } = await twoInstances(t)
  // The stream key holds something else: every XADD fails, as while Redis refuses writes.
  await redis.set(`${prefix}:events`, 'not a stream')
  for (let i = 0; i < 200; i++) await apps[i % 2].inject({ url: '/', headers: { 'x-tenant': 'acme' } })
  t.equal(events.length, 1, 'onAlert heard the crossing (0.8)')
  await sleep(100)
  const month = new Date().toISOString().slice(0, 7).replace('-', '')
  const usageKey = `${prefix}:v1:{t:acme}:usage:${month}`
  t.ok((await redis.hget(usageKey, 'p:q:0.8')) !== null, 'the crossing is still marked pending')
  await redis.del(`${prefix}:events`)
  // The record is named within a second (a batched write): the swept event names the tier too.
  t.ok(await within(3000, async () => (await redis.hget(usageKey, 'tier')) === 'metered') < Infinity)
  const publisher = new AlertPublisher({ thresholds: [0.8, 0.9, 1], onAlert: undefined, streamKey: `${prefix}:events`, maxLength: 1000 }, redis, console)
  const sweep = new AlertSweep(redis, prefix, publisher, 60_000, console)
  t.equal(await sweep.sweep(Date.now(), true), 1)
  const entries = await redis.xrange(`${prefix}:events`, '-', '+')
  t.equal(entries.length, 1)
  t.equal(JSON.parse(entries[0][1][3]).id, events[0].id, 'the same id as the instance saw')
  t.match(JSON.parse(entries[0][1][3]), { tenantId: 'acme', tier: 'metered', threshold: 0.8, used: 200, quota: 250 })
  t.equal(await redis.hget(usageKey, 'p:q:0.8'), null, 'and the mark went')
  t.equal(await sweep.sweep(Date.now(), true), 0, 'a second sweep finds nothing')
})

t.test('Redis restarted empty: the count starts again, and a crossing made again carries the id already sent', async t => {
  const server = await privateRedis(t)
  const redis = new RedisClient(server.url, { maxRetriesPerRequest: 1 })
  t.teardown(() => redis.disconnect())
  const events: QuotaAlertEvent[] = []
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, {
    redis, keyPrefix: 'restart', tenantExtractor: extractor, tiers: { metered: QUOTA }, quotaAlerts: { onAlert: event => events.push(event) }
  })
  app.get('/', async () => 'ok')
  await app.ready()
  const acme = { 'x-tenant': 'acme' }
  for (let i = 0; i < 200; i++) t.equal((await app.inject({ url: '/', headers: acme })).statusCode, 200)
  t.same(events.map(e => e.threshold), [0.8])
  t.ok(await within(2000, async () => await redis.xlen('restart:events') === 1) < Infinity, 'in the stream')
  const first = events[0]

  await server.restart() // empty: no counters, no crossings, no stream
  // Until the client is back, decisions fail open (degraded) and count nowhere.
  t.ok(await within(5000, async () => (await app.inject({ url: '/', headers: acme })).headers['x-ratelimit-status'] !== 'degraded') < Infinity, 'Redis decides again')
  const counted = await app.policies.usage('acme')
  t.ok(counted.month.used >= 1 && counted.month.used < 10, `the month counts again from nothing (${counted.month.used})`)
  for (let used = counted.month.used; used < 200; used++) t.equal((await app.inject({ url: '/', headers: acme })).statusCode, 200)
  t.same(events.map(e => e.threshold), [0.8, 0.8], 'the count crossed 0.8 again')
  t.equal(events[1].id, first.id, 'with the id a consumer has seen already: handled once')
  t.ok(await within(2000, async () => await redis.xlen('restart:events') === 1) < Infinity, 'the new stream holds it')
  t.equal((await app.inject({ url: '/', headers: acme })).statusCode, 200, 'and the process serves on')
})

t.test('quotaAlerts: false sends nothing; bad options fail at registration naming the field', async t => {
  const { apps, events } = await twoInstances(t, { quotaAlerts: false })
  for (let i = 0; i < 210; i++) await apps[0].inject({ url: '/', headers: { 'x-tenant': 'acme' } })
  t.same(events, [])
  for (const [quotaAlerts, field] of [[{ thresholds: [0] }, 'thresholds'], [{ thresholds: [0.12345] }, 'thresholds'], [{ stream: { maxLength: 0 } }, 'maxLength'], [{ sweepSeconds: 0 }, 'sweepSeconds']] as const) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(async () => { await app.register(rateLimiting, { store: 'memory', quotaAlerts: quotaAlerts as never }).ready() }, new RegExp(field))
  }
})

t.test('memory store: 300 parallel requests on one instance fire 0.8, 0.9 and 1.0 once each, in process', async t => {
  const events: QuotaAlertEvent[] = []
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { store: 'memory', tenantExtractor: extractor, tiers: { metered: QUOTA }, quotaAlerts: { onAlert: event => events.push(event) } })
  app.get('/', async () => 'ok')
  await app.ready()
  const port = await listen(app)
  const codes = await Promise.all(Array.from({ length: 300 }, async () => await get(port, { 'x-tenant': 'acme' })))
  t.equal(codes.filter(c => c === 200).length, 250)
  t.same(events.map(e => [e.scope, e.tenantId, e.threshold, e.used]), [['tenant', 'acme', 0.8, 200], ['tenant', 'acme', 0.9, 225], ['tenant', 'acme', 1, 250]])
})
