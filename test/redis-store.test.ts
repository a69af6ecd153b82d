// What only the Redis store does: EVALSHA with a NOSCRIPT fallback, Redis's own clock, key layout,
// one script call per admission, and reuse of @fastify/redis.
import fastifyRedis from '@fastify/redis'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import rateLimiting, { RedisStore, type Decision, type StoreKeys } from '../dist/index.js'
import { storeKeys } from '../dist/keys.js'
import { ADMIT_SCRIPT } from '../dist/store/redis-store.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { commandCalls, privateRedis, REDIS_URL, sharedRedis, uniquePrefix } from './helpers/redis.js'
import { limits } from './helpers/stores.js'

t.test('the admit script is pinned: a change to it is a deliberate change of this SHA', async t => {
  t.equal(ADMIT_SCRIPT.sha, '281d4d605e5fe7cd4d5f6e0b47eb1425de55466f')
  t.equal(ADMIT_SCRIPT.numberOfKeys, undefined, 'three keys per item of a batch: callers say how many')
  t.match(ADMIT_SCRIPT.source, /^--\[\[\nadmit-batch\.lua/)
})

t.test('EVALSHA first, EVAL after SCRIPT FLUSH, then EVALSHA again', async t => {
  const server = await privateRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.disconnect())
  const store = new RedisStore({ client })
  const keys = storeKeys('p', 'tenant', 'acme', undefined)
  t.equal(await client.script('LOAD', ADMIT_SCRIPT.source), ADMIT_SCRIPT.sha)
  await store.admit({ keys, cost: 1, limits: limits(10), leaseId: '' })
  await client.script('FLUSH')
  const d = await store.admit({ keys, cost: 1, limits: limits(10), leaseId: '' })
  t.equal(d.minute.remaining, 8, 'the flushed script was sent again and ran')
  await store.admit({ keys, cost: 1, limits: limits(10), leaseId: '' })
  const stats = await client.info('commandstats')
  t.match(stats, /cmdstat_eval:calls=1,.*failed_calls=0/, 'one EVAL, for the NOSCRIPT')
  t.match(stats, /cmdstat_evalsha:calls=3,.*failed_calls=1/, 'three EVALSHA, one refused with NOSCRIPT')
})

t.test('other script errors are not retried with EVAL', async t => {
  const server = await privateRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.disconnect())
  const keys = storeKeys('p', 'tenant', 'acme', undefined)
  await client.hset(keys.counters, 'x', 'not a number') // a foreign value under our key
  await client.set(keys.leases, 'wrong type')
  await client.script('LOAD', ADMIT_SCRIPT.source)
  const store = new RedisStore({ client })
  await t.rejects(store.admit({ keys, cost: 1, limits: limits(10, 10, 10, 1), leaseId: 'a' }))
  t.notMatch(await client.info('commandstats'), /cmdstat_eval:/, 'no EVAL was attempted')
})

t.test('time comes from Redis TIME', async t => {
  const client = sharedRedis(t)
  const prefix = uniquePrefix(t, client)
  const store = new RedisStore({ client })
  const [seconds] = await client.time()
  const d = await store.admit({ keys: storeKeys(prefix, 'tenant', 'a', undefined), cost: 1, limits: limits(1), leaseId: '' })
  t.ok(Math.abs(d.now - Number(seconds) * 1000) < 2000, 'the decision carries the server clock')
})

t.test('a request sent alone costs one script call; unlimited tenants cost none', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const app = await buildApp(t, { kind: 'memory', options: { redis, tenantExtractor: headerTenant } })
  await app.inject({ url: '/', headers: { 'x-tenant': 'warm' } }) // loads the script
  await new Promise(resolve => setTimeout(resolve, 20)) // its lease release goes out just after the response
  await redis.config('RESETSTAT')
  for (let i = 0; i < 5; i++) await app.inject({ url: '/', headers: { 'x-tenant': 'acme', 'x-tier': 'professional' } })
  for (let i = 0; i < 5; i++) await app.inject({ url: '/', headers: { 'x-tenant': 'root', 'x-tier': 'platform_admin' } })
  await new Promise(resolve => setTimeout(resolve, 50)) // releases are sent without waiting
  const calls = await commandCalls(redis)
  t.equal(calls.hmget, 5, 'five admissions, all in scripts')
  t.ok(calls.evalsha >= 5 && calls.evalsha <= 10, `one script call per request sent alone; a release rides along or goes in a call of its own (${calls.evalsha})`)
  t.ok(calls.hdel >= 5, 'one lease release per limited request, after the response')
  t.same(await redis.keys('*:c'), [], 'every lease given back (an empty leases hash is gone)')
  t.notOk(calls.eval, 'no EVAL')
  t.same(Object.keys(calls).filter(c => !['evalsha', 'config|resetstat', 'info', 'time', 'hlen', 'hgetall', 'hmget', 'hset', 'pexpire', 'hdel'].includes(c)), [], 'nothing else on the request path')
})

t.test('uses fastify.redis from @fastify/redis and never closes it', async t => {
  const app = Fastify()
  const client = new Redis(REDIS_URL)
  await app.register(fastifyRedis, { client, closeClient: false })
  const prefix = uniquePrefix(t, sharedRedis(t))
  await app.register(rateLimiting, { keyPrefix: prefix })
  app.get('/', async () => 'ok')
  t.equal(app.rateLimitStore.kind, 'redis')
  t.equal((await app.inject({ url: '/' })).headers['x-ratelimit-remaining-minute'], '4')
  t.equal(app.redis, client)
  await app.close()
  t.equal(await client.ping(), 'PONG', 'the client @fastify/redis owns is still open')
  client.disconnect()
})

t.test('keys: one prefix, one hash tag per tenant, nothing else', async t => {
  const client = sharedRedis(t)
  const prefix = uniquePrefix(t, client)
  const app = await buildApp(t, { kind: 'redis', keyPrefix: prefix, options: { tenantExtractor: headerTenant } }, app => {
    app.get('/', async () => 'ok')
    app.get('/search', { config: { rateLimit: { bucket: 'search' } } }, async () => 'ok')
  })
  await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })
  await app.inject({ url: '/search', headers: { 'x-tenant': 'acme' } })
  await app.inject({ url: '/', remoteAddress: '10.2.3.4' })
  await new Promise(resolve => setTimeout(resolve, 20)) // lease sets empty again just after the responses
  const keys = (await client.keys(`${prefix}:*`)).sort()
  t.same(keys, [
    `${prefix}:v1:{a:10.2.3.4}:all:n`,
    `${prefix}:v1:{policies}`, // the service's configured tiers, recorded at boot
    `${prefix}:v1:{t:acme}:all:n`,
    `${prefix}:v1:{t:acme}:b.search:n`,
    `${prefix}:v1:{t:acme}:usage:${new Date().toISOString().slice(0, 7).replace('-', '')}` // the month's usage record (not an anonymous client's)
  ])
  const ttl = await client.pttl(`${prefix}:v1:{t:acme}:all:n`)
  t.ok(ttl > 0 && ttl <= 31 * 86_400_000, 'counters expire by themselves (at the latest, at the end of the month)')
  const kept = await client.pttl(keys[keys.length - 1])
  t.ok(kept > 3 * 31 * 86_400_000 && kept <= 4 * 31 * 86_400_000, 'the usage record three months (of 31 days) past its month')
})

t.test('the script names the month and the buckets after its own clock, across a leap February\'s end', async t => {
  const client = sharedRedis(t)
  const prefix = uniquePrefix(t, client)
  const now = Date.UTC(2028, 1, 29, 23, 59, 30) // the last minute of a leap February
  const keys = storeKeys(prefix, 'tenant', 'acme', undefined)
  const admit = async (at: number): Promise<unknown> =>
    await ADMIT_SCRIPT.run(client, [keys.counters, keys.leases, keys.month, JSON.stringify([20, 60_000, at]), '[1,5,50,100,-1,-1]', '', ''], 3)
  t.equal(await admit(now), `0 0 ${now} 1 1 1 0 0`, 'admitted; one request counted in each window and the month')
  t.equal(await admit(now + 90_000), `0 0 ${now + 90_000} 1 2 1 0 0`, 'a minute and a half later: a new minute window, the same hour, a new month')
  const fields = await client.hkeys(keys.counters)
  t.ok(fields.includes('q202802') && fields.includes('q202803'), 'one month field each side of the boundary')
  t.ok(fields.includes(`m${Math.floor((now + 90_000) / 3000)}`) && fields.includes(`h${Math.floor(now / 180_000)}`), 'buckets named after the clock')
  const ttl = await client.pttl(keys.counters)
  t.ok(ttl > 0 && ttl <= Date.UTC(2028, 3, 1) - now, 'the key lives until the end of March at the latest')
})

/** Limits with every window and a concurrency limit: admissions write counters and take leases. */
const WINDOWS_AND_LEASES = limits(100, 1000, 10_000, 10)

/** A store on the shared Redis with the given lease lifetime (and clock), and one tenant's keys. */
function leaseStore (t: Test, leaseTtlMs: number, clock?: () => number): { client: Redis, store: RedisStore, keys: StoreKeys } {
  const client = sharedRedis(t)
  const store = new RedisStore({ client, clock, leaseTtlMs })
  t.teardown(() => store.close())
  return { client, store, keys: storeKeys(uniquePrefix(t, client), 'tenant', 'acme', undefined) }
}

t.test('the leases hash outlives its newest lease, and its expiry is renewed only when that needs it', async t => {
  let now = Date.UTC(2030, 5, 10, 12, 0, 0)
  const { client, store, keys } = leaseStore(t, 10_000, () => now)
  const admit = async (id: string): Promise<void> => {
    t.ok((await store.admit({ keys, cost: 1, limits: WINDOWS_AND_LEASES, leaseId: id })).allowed, `lease ${id} taken`)
  }
  const renewedUntil = async (): Promise<number> => Number(await client.hget(keys.counters, 'lX'))

  await admit('a')
  t.equal(await renewedUntil(), now + 20_000, 'a new leases hash lives two lifetimes')
  const ttl = await client.pttl(keys.leases)
  t.ok(ttl > 10_000 && ttl <= 20_000, `the hash expires after its lease (${ttl} ms)`)

  now += 4_000
  await admit('b')
  t.equal(await renewedUntil(), now - 4_000 + 20_000, 'not renewed while a new lease still fits')

  now += 7_000 // a lease taken now would outlive the set
  await admit('c')
  t.equal(await renewedUntil(), now + 20_000, 'renewed once a new lease would outlive it')

  store.release(keys, 'a')
  store.release(keys, 'b')
  store.release(keys, 'c')
  await store.close() // sends the waiting releases
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(await client.exists(keys.leases), 0, 'an empty hash is gone')
  now += 1_000
  await admit('d')
  const again = await client.pttl(keys.leases)
  t.ok(again > 10_000, 'a hash made again after it emptied gets an expiry at once, whatever lX says')
})

t.test('a lease taken without window limits never shortens the expiry the counters remember', async t => {
  const { client, store, keys } = leaseStore(t, 10_000)
  await store.admit({ keys, cost: 1, limits: WINDOWS_AND_LEASES, leaseId: 'windows' })
  // The same keys under limits with no window (a route or tier with concurrency only).
  await store.admit({ keys, cost: 1, limits: limits(Infinity, Infinity, Infinity, 10), leaseId: 'concurrency-only' })
  const ttl = await client.pttl(keys.leases)
  t.ok(ttl > 15_000, `still about two lifetimes (${ttl} ms), not one`)
  await store.admit({ keys, cost: 1, limits: WINDOWS_AND_LEASES, leaseId: 'windows-again' })
  t.ok(await client.pttl(keys.leases) > 15_000, 'and the next admission, trusting lX, leaves it so')
})

t.test('renewing a lease never shortens the leases hash\'s expiry', async t => {
  const { client, store, keys } = leaseStore(t, 60_000)
  await store.admit({ keys, cost: 1, limits: WINDOWS_AND_LEASES, leaseId: 'long' })
  const before = await client.pttl(keys.leases)
  t.ok(before > 60_000, 'two lifetimes after the first lease')
  await store.renewLeases([{ keys, id: 'long' }])
  const after = await client.pttl(keys.leases)
  t.ok(after > 60_000 && after <= before, `the renewal left the longer expiry alone (${before} → ${after} ms)`)
  t.ok(Number((await client.hget(keys.leases, 'long')) ?? 0) > Date.now() + 50_000, 'the lease itself was extended')
})

/** A store on a private Redis whose script is loaded and whose command counts start from zero. */
async function countedStore (t: Test): Promise<{ client: Redis, store: RedisStore }> {
  const server = await privateRedis(t)
  const client = new Redis(server.url)
  t.teardown(() => client.disconnect())
  const store = new RedisStore({ client })
  t.teardown(() => store.close())
  await store.admit({ keys: storeKeys('p', 'tenant', 'warm', undefined), cost: 1, limits: limits(10), leaseId: '' }) // loads the script
  await client.config('RESETSTAT')
  return { client, store }
}

t.test('the admissions of one event-loop turn go to Redis as one script call, each answered on its own', async t => {
  const { client, store } = await countedStore(t)

  const broken = storeKeys('p', 'tenant', 'broken', undefined)
  await client.set(broken.counters, 'a string where a hash belongs')
  const tenants = Array.from({ length: 20 }, (_, i) => storeKeys('p', 'tenant', `t${i}`, undefined))
  const settled = await Promise.allSettled([
    ...tenants.map(async (keys, i) => await store.admit({ keys, cost: 1, limits: limits(10, 100, 1000, 5), leaseId: `lease-${i}` })),
    store.admit({ keys: broken, cost: 1, limits: limits(10), leaseId: '' }),
    store.admit({ keys: tenants[0], cost: 1, limits: limits(1), leaseId: '' }) // over its minute limit: t0 was just counted
  ])
  const calls = await commandCalls(client)
  t.equal(calls.evalsha, 1, 'one script call for 22 admissions')
  t.equal(calls.hmget, 22, 'every tenant\'s counters read once in the batch, t0 once more for the rejected item\'s Retry-After')
  t.ok(settled.slice(0, 20).every(r => r.status === 'fulfilled' && r.value.allowed && r.value.concurrent.inFlight === 1), 'twenty tenants admitted, each with its lease')
  t.equal(settled[20].status, 'rejected', 'the item with a foreign value under its key fails')
  t.match((settled[20] as PromiseRejectedResult).reason, { code: 'FST_MAESTRO_RL_STORE_REPLY', message: /WRONGTYPE/ })
  const last = settled[21]
  t.ok(last.status === 'fulfilled' && !last.value.allowed && last.value.reason === 'rate_limit_exceeded', 'and alone: a later item of the same batch still sees the earlier ones')

  // Releases that found no admission to ride along with go out as items of their own.
  await client.config('RESETSTAT')
  tenants.forEach((keys, i) => store.release(keys, `lease-${i}`))
  await new Promise(resolve => setTimeout(resolve, 30))
  const released = await commandCalls(client)
  t.equal(released.evalsha, 1, 'twenty releases in one script call')
  t.ok(released.hdel >= 20, 'one HDEL per tenant')
  t.same(await Promise.all(tenants.map(async keys => await client.exists(keys.leases))), tenants.map(() => 0), 'every lease set is empty and gone')
})

t.test('a busy tenant\'s items in one batch read its hashes once and write them once', async t => {
  const { client, store } = await countedStore(t)
  const keys = storeKeys('p', 'tenant', 'busy', undefined)
  const decisions = await Promise.all(Array.from({ length: 12 }, async (_, i) =>
    await store.admit({ keys, cost: 1, limits: limits(100, 1000, 10_000, 50), leaseId: `l${i}` })))
  const calls = await commandCalls(client)
  t.equal(calls.evalsha, 1, 'one script call')
  t.same({ hmget: calls.hmget, hlen: calls.hlen, hset: calls.hset }, { hmget: 1, hlen: 1, hset: 2 }, 'one read of each hash, one write of each')
  t.same(decisions.map(d => [d.minute.remaining, d.hour.remaining, d.month.remaining, d.concurrent.inFlight]),
    Array.from({ length: 12 }, (_, i) => [99 - i, 999 - i, 9999 - i, i + 1]), 'each item saw the ones before it')
  t.equal(await client.hlen(keys.leases), 12, 'every lease written')
  const counters = await client.hgetall(keys.counters)
  t.equal(counters.mS, '12', 'the minute sum written')
  t.ok(await client.pttl(keys.counters) > 0 && await client.pttl(keys.leases) > 0, 'both hashes expire')
})

/**
 * Turns of steps, each one batch for the batched store: leases run out, windows fill, releases ride
 * along, the month turns, buckets leave the window, leases expire, and leases hashes empty.
 */
async function batchMatchesOneByOne (t: Test, leaseTtlMs: number): Promise<void> {
  const client = sharedRedis(t)
  let now = Date.UTC(2026, 10, 30, 23, 59, 50) // ten seconds before a month ends
  const clock = (): number => now
  const batched = new RedisStore({ client, clock, leaseTtlMs })
  const oneByOne = new RedisStore({ client, clock, leaseTtlMs, pipeline: false })
  t.teardown(async () => { await batched.close(); await oneByOne.close() })
  type Limits = ReturnType<typeof limits>
  type Step = ['admit', string, number, Limits, string] | ['release', string, string]
  const terms: Record<string, [number, Limits]> = {
    a: [1, limits(5, 20, 100, 3)],
    b: [1, limits(3)],
    c: [1, limits(Infinity, Infinity, Infinity, 2)],
    d: [2, limits(10, 10, 10, 10)],
    e: [1, limits(100, 1000, 10_000, 5)],
    g: [1, limits(100, 1000, 10_000, 2)]
  }
  const admit = (id: string): Step => ['admit', id[0], ...terms[id[0]], id]
  const admits = (...ids: string[]): Step[] => ids.map(admit)
  const release = (id: string): Step => ['release', id[0], id]
  const turns: Array<{ advance: number, steps: Step[] }> = [
    { advance: 0, steps: admits('a1', 'b1', 'c1', 'd1', 'e1', 'a2', 'b2', 'c2', 'd2', 'a3', 'b3', 'c3', 'd3', 'a4', 'b4', 'd4', 'a5', 'd5', 'd6') },
    {
      advance: 4_000,
      steps: [
        // Releases ride along with the next admission of their tenant: here after the batch has read the leases.
        admit('a6'), release('a1'), admit('a7'), release('a2'), release('c1'), ...admits('a8', 'c4', 'c5', 'b5', 'd7'),
        // e's only lease comes back between two admissions: its hash empties on the way.
        admit('e2'), release('e1'), admit('e3'),
        admit('g1')
      ]
    },
    // One lease lifetime later, to the millisecond: g1 has just expired and the leases' expiry is not
    // due for renewal; g3 finds the hash full and drops g1, the only lease written.
    { advance: leaseTtlMs, steps: admits('g2', 'g3') },
    { advance: 30_000, steps: [release('a3'), ...admits('a9', 'b6', 'b7'), release('d1'), ...admits('d8', 'a10')] },
    { advance: 45_000, steps: admits('a11', 'a12', 'a13', 'a14', 'c6', 'c7', 'c8', 'b8', 'b9', 'd9', 'd10') }
  ]
  const prefixes = [uniquePrefix(t, client), uniquePrefix(t, client)]
  const keysOf = (prefix: string, tenant: string): StoreKeys => storeKeys(prefix, 'tenant', tenant, undefined)
  const outcomes: Array<Array<Array<[string, Decision]>>> = [[], []]
  for (const { advance, steps } of turns) {
    now += advance
    for (const [index, store] of [batched, oneByOne].entries()) {
      const pending: Array<Promise<[string, Decision]>> = []
      for (const step of steps) {
        if (step[0] === 'release') {
          store.release(keysOf(prefixes[index], step[1]), step[2])
        } else {
          const [, tenant, cost, stepLimits, id] = step
          pending.push(store.admit({ keys: keysOf(prefixes[index], tenant), cost, limits: stepLimits, leaseId: id }).then(d => [id, d] as [string, Decision]))
        }
      }
      outcomes[index].push(await Promise.all(pending))
    }
  }
  t.same(outcomes[0], outcomes[1], 'the same decisions, turn by turn')
  t.ok(outcomes[0].flat().some(([, d]) => d.reason === 'concurrent_limit_exceeded'), 'the concurrency limit was reached within a batch')
  t.ok(outcomes[0].flat().some(([, d]) => d.reason === 'rate_limit_exceeded'), 'so was a window')
  for (const tenant of Object.keys(terms)) {
    const [a, b] = prefixes.map(prefix => keysOf(prefix, tenant))
    t.same(await client.hgetall(a.counters), await client.hgetall(b.counters), `${tenant}: the same counters`)
    t.same(await client.hgetall(a.leases), await client.hgetall(b.leases), `${tenant}: the same leases`)
    for (const key of ['counters', 'leases'] as const) {
      const [ttlA, ttlB] = [await client.pttl(a[key]), await client.pttl(b[key])]
      t.ok(Math.abs(ttlA - ttlB) < 1000, `${tenant}: the same expiry of its ${key} (${ttlA} and ${ttlB} ms)`)
    }
  }
}

for (const leaseTtlMs of [10_000, 500]) {
  t.test(`one batch decides and stores exactly what the same items sent one by one do (leases live ${leaseTtlMs} ms)`, async t => {
    await batchMatchesOneByOne(t, leaseTtlMs)
  })
}

t.test('any lease id is given back: one alone, several together, and ids that look like JSON', async t => {
  const client = sharedRedis(t)
  const prefix = uniquePrefix(t, client)
  const store = new RedisStore({ client })
  t.teardown(() => store.close())
  const keys = storeKeys(prefix, 'tenant', 'acme', undefined)
  const ids = ['[odd', '["x"]', 'plain', 'with space', '']
  for (const id of ids) t.ok((await store.admit({ keys, cost: 1, limits: WINDOWS_AND_LEASES, leaseId: id })).allowed)
  t.equal(await client.hlen(keys.leases), ids.length, 'five leases held')
  store.release(keys, '[odd') // alone: sent as a JSON array, since it starts like one
  await new Promise(resolve => setTimeout(resolve, 20))
  t.same((await client.hkeys(keys.leases)).sort(), ['', '["x"]', 'plain', 'with space'].sort())
  for (const id of ids.slice(1)) store.release(keys, id) // together
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(await client.exists(keys.leases), 0, 'all given back')
})
