// Redis Cluster: every script stays on one slot; limits, leases, policies and their propagation work
// across three masters with an ioredis Cluster client.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import Fastify from 'fastify'
import rateLimiting, { RedisStore, PolicyManager, type QuotaAlertEvent } from '../dist/index.js'
import rateLimitAdmin from '../dist/admin.js'
import { storeKeys } from '../dist/keys.js'
import { keySlot } from '../dist/store/key-slot.js'
import { buildApp, headerTenant, listen } from './helpers/app.js'
import { privateCluster } from './helpers/cluster.js'
import { conformanceSuite, type MakeStore } from './helpers/conformance.js'
import { within } from './helpers/wait.js'
import { adjustmentSuite } from './helpers/adjust-suite.js'
import { levelsSuite } from './helpers/levels-suite.js'
import { levelsHttpSuite, type MakeInstances } from './helpers/levels-http.js'
import { limits } from './helpers/stores.js'

t.test('on a three-master Redis Cluster', async t => {
  const cluster = await privateCluster(t)
  const client = cluster.client()
  await new Promise(resolve => client.once('ready', resolve))

  t.test('the store: windows, cost, month, leases and usage, for tenants spread over every master', async t => {
    const clock = { now: Date.UTC(2026, 10, 30, 23, 59, 0) }
    const store = new RedisStore({ client, clock: () => clock.now })
    const ids = Array.from({ length: 30 }, (_, i) => `tenant-${i}`)
    const slots = new Set<number>()
    for (const id of ids) {
      const keys = storeKeys('cl', 'tenant', id, 'b')
      slots.add(Number(await client.cluster('KEYSLOT', keys.counters)))
      const l = limits(3, 10, 4, 1)
      const a = await store.admit({ keys, cost: 1, limits: l, leaseId: 'x' })
      t.equal(a.allowed, true)
      t.equal((await store.admit({ keys, cost: 1, limits: l, leaseId: 'y' })).reason, 'concurrent_limit_exceeded', `${id}: lease held`)
      store.release(keys, 'x')
      await sleep(5)
      t.equal((await store.admit({ keys, cost: 2, limits: l, leaseId: 'z' })).allowed, true)
      store.release(keys, 'z')
      await sleep(5)
      const over = await store.admit({ keys, cost: 1, limits: l, leaseId: 'w' })
      t.equal(over.reason, 'rate_limit_exceeded', `${id}: 3 per minute`)
      const usage = await store.usage(keys)
      t.same([usage.minute, usage.month, usage.inFlight], [3, 3, 0])
    }
    t.ok(slots.size > 10, `keys spread over ${slots.size} slots`)
    const perNode = await Promise.all(client.nodes('master').map(async node => (await node.dbsize())))
    t.ok(perNode.filter(n => n > 0).length === 3, `every master holds counters (${perNode.join(', ')})`)
    await store.resetSubject('cl:v1:{t:tenant-0}:')
    t.equal((await store.usage(storeKeys('cl', 'tenant', 'tenant-0', 'b'))).minute, 0, 'resetSubject finds keys on their master')
  })

  /** A Redis store on the cluster with a clock of its own, for the store suites. */
  const clusterStore: MakeStore = (t, settings) => {
    const clock = { now: Date.UTC(2026, 10, 27, 12, 0, 0) }
    const prefix = 'cl-suite-' + Math.random().toString(36).slice(2)
    const store = new RedisStore({ client, clock: () => clock.now, ...settings })
    t.teardown(() => store.close())
    return { store, clock, prefix, redis: undefined, keys: (id: string, bucket?: string) => storeKeys(prefix, 'tenant', id, bucket) }
  }

  t.test('the store behaviour suite, on the cluster', async t => { conformanceSuite(t, clusterStore) })
  t.test('peek, settle and refund, on the cluster', async t => { adjustmentSuite(t, clusterStore) })
  t.test('organizations and shared route budgets, on the cluster', async t => { levelsSuite(t, clusterStore) })

  t.test('organizations and shared route budgets through two Fastify instances on the cluster', async t => {
    const onCluster: MakeInstances = async (t, count, options, routes) => {
      const prefix = 'cl-levels-' + Math.random().toString(36).slice(2)
      const apps = []
      for (let i = 0; i < count; i++) {
        const app = Fastify()
        t.teardown(() => app.close())
        await app.register(rateLimiting, { ...options, redis: cluster.client(), keyPrefix: prefix })
        routes(app)
        await app.ready()
        apps.push(app)
      }
      return { apps, prefix }
    }
    levelsHttpSuite(t, onCluster, 2, false)
  })

  t.test('quota alerts on the cluster: 300 parallel requests over two instances fire each threshold once; the usage record stays with its tenant', async t => {
    const prefix = 'cl-alerts-' + Math.random().toString(36).slice(2)
    const events: QuotaAlertEvent[] = []
    const apps: Array<Awaited<ReturnType<typeof buildApp>>> = []
    for (let i = 0; i < 2; i++) {
      const app = Fastify()
      t.teardown(() => app.close())
      await app.register(rateLimiting, {
        redis: cluster.client(),
        keyPrefix: prefix,
        tiers: { metered: { requestsPerMinute: 100_000, requestsPerHour: null, concurrentRequests: null, monthlyQuota: 250 } },
        tenantExtractor: request => ({ tenantId: String(request.headers['x-tenant']), tier: 'metered', organizationId: 'globex', organizationTier: 'metered' }),
        quotaAlerts: { onAlert: event => events.push(event) }
      })
      app.get('/', async () => 'ok')
      await app.ready()
      apps.push(app)
    }
    const codes = await Promise.all(Array.from({ length: 300 }, async (_, i) => (await apps[i % 2].inject({ url: '/', headers: { 'x-tenant': 'acme' } })).statusCode))
    t.equal(codes.filter(c => c === 200).length, 250)
    t.same(events.map(e => `${e.scope} ${e.threshold}`).sort(), ['organization 0.8', 'organization 0.9', 'organization 1', 'tenant 0.8', 'tenant 0.9', 'tenant 1'])
    const month = new Date().toISOString().slice(0, 7).replace('-', '')
    const record = `${prefix}:v1:{o:globex}:t:acme/usage:${month}`
    t.ok(await within(3000, async () => (await client.hget(record, 'id')) === 'acme') < Infinity, 'named on its master')
    t.match(await client.hgetall(record), { q: '250', quota: '250', scope: 'tenant', tier: 'metered' })
    t.ok(await within(3000, async () => await client.xlen(`${prefix}:events`) === 6) < Infinity, 'six events in the stream')
    t.same(Object.keys(await client.hgetall(record)).filter(f => f.startsWith('p:')), [], 'nothing left pending')
  })

  t.test("an organization's tenants share its slot; a shared budget lives in its own, reserved first and given back on a refusal", async t => {
    const s = clusterStore(t)
    const org = storeKeys(s.prefix, 'organization', 'acme', undefined)
    const tenant = storeKeys(s.prefix, 'tenant', 'team-a', undefined, 'acme')
    const route = storeKeys(s.prefix, 'route', 'renderer', undefined)
    t.equal(keySlot(tenant.counters), keySlot(org.counters), 'tenant and organization: one slot, one script call')
    // Find a budget name whose slot is on another master than the organization's.
    t.not(keySlot(route.counters), keySlot(org.counters))
    const levels = [
      { scope: 'organization' as const, keys: org, limits: limits(100, Infinity, Infinity, 10) },
      { scope: 'route' as const, keys: route, limits: limits(100, Infinity, Infinity, 10) }
    ]
    // The tenant refuses (1 per minute): the route's reservation and lease go back at once.
    t.equal((await s.store.admit({ keys: tenant, cost: 2, limits: limits(2), leaseId: 'a', levels })).allowed, true)
    const refused = await s.store.admit({ keys: tenant, cost: 2, limits: limits(2), leaseId: 'b', levels })
    t.same([refused.allowed, refused.scope], [false, 'tenant'])
    const took = await within(2000, async () => {
      const u = await s.store.usage(route)
      return u.minute === 2 && u.inFlight === 1
    })
    t.ok(took < 2000, 'the shared budget keeps the admitted request only: the refused one was given back')
    t.same([(await s.store.usage(org)).minute, (await s.store.usage(org)).inFlight], [2, 1])
    // The route refuses: the tenant and its organization are never asked.
    const full = { ...levels[1], limits: limits(2) }
    const byRoute = await s.store.admit({ keys: storeKeys(s.prefix, 'tenant', 'team-b', undefined, 'acme'), cost: 1, limits: limits(5), leaseId: 'c', levels: [levels[0], full] })
    t.same([byRoute.allowed, byRoute.scope, byRoute.levels?.map(l => l.scope)], [false, 'route', ['route']])
    t.equal((await s.store.usage(org)).minute, 2, 'nothing taken at the organization')
  })

  t.test('two Fastify instances on the cluster: shared counts and policy propagation within a second', async t => {
    const keyPrefix = 'cl-app'
    const a = await buildApp(t, { kind: 'memory', keyPrefix, options: { redis: cluster.client(), tenantExtractor: headerTenant } })
    const b = await buildApp(t, { kind: 'memory', keyPrefix, options: { redis: cluster.client(), tenantExtractor: headerTenant } })
    t.equal(a.rateLimitStore.kind, 'redis')
    const codes = []
    for (let i = 0; i < 11; i++) codes.push((await (i % 2 === 0 ? a : b).inject({ url: '/', headers: { 'x-tenant': 'acme', 'x-tier': 'starter' } })).statusCode)
    t.same(codes, [...Array(10).fill(200), 429])
    await sleep(200) // both subscribers connected
    const started = Date.now()
    await a.policies.setTenantOverride('globex', { requestsPerMinute: 77 })
    let seen = ''
    while (Date.now() - started < 1000) {
      seen = (await b.inject({ url: '/', headers: { 'x-tenant': 'globex' } })).headers['x-ratelimit-limit-minute'] as string
      if (seen === '77') break
      await sleep(5)
    }
    t.equal(seen, '77', `override live on the other instance after ${Date.now() - started} ms`)
    const usage = await b.policies.usage('acme')
    t.equal(usage.minute.used, 10)
  })

  t.test('the console\'s routes on the cluster: tenants from every master, alerts from the stream, every master pinged', async t => {
    const app = await buildApp(t, {
      kind: 'memory',
      keyPrefix: 'cl-console',
      options: { redis: cluster.client(), tenantExtractor: headerTenant, tiers: { tiny: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: null, monthlyQuota: 10 } } }
    }, app => {
      app.get('/', async () => 'ok')
      app.register(rateLimitAdmin, { prefix: '/admin', authorize: () => {} })
    })
    const tenants = Array.from({ length: 12 }, (_, i) => `console-${i}`)
    t.ok(new Set(tenants.map(id => client.slots[keySlot(`{t:${id}}`)]?.[0])).size > 1, 'the tenants live on more than one master')
    for (const [i, id] of tenants.entries()) {
      for (let n = 0; n <= i % 9; n++) await app.inject({ url: '/', headers: { 'x-tenant': id, 'x-tier': 'tiny' } })
    }
    const page = (await app.inject('/admin/tenants?sort=used&order=desc&limit=5')).json()
    t.equal(page.total, 12, 'every tenant, whichever master holds it')
    t.same(page.rows.map((r: { month: { used: number } }) => r.month.used), [9, 8, 7, 6, 5])
    const events = (await app.inject('/admin/events?limit=200')).json()
    t.equal(events.source, 'stream')
    const crossed = (threshold: number): string[] => events.events.filter((e: { threshold: number }) => e.threshold === threshold).map((e: { tenantId: string }) => e.tenantId).sort()
    t.same(crossed(0.8), ['console-7', 'console-8'], '8 and 9 of 10 crossed 0.8')
    t.same(crossed(0.9), ['console-8'], '9 of 10 crossed 0.9')
    t.match((await app.inject('/admin/health')).json(), { store: 'redis', reachable: true, breaker: 'closed' })
  })

  t.test('fastify.rateLimiter on the cluster: parallel consumes over two instances, peek and refund', async t => {
    // 300 calls at once for one tenant queue on one master (a Cluster call holds one admission): a
    // deadline that a slow machine cannot meet would admit some degraded. This test is about counts.
    const options = { redis: cluster.client(), storeTimeoutMs: 2000, tiers: { hundred: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: null, monthlyQuota: 1000 } } }
    const a = await buildApp(t, { kind: 'memory', keyPrefix: 'cl-api', options })
    const b = await buildApp(t, { kind: 'memory', keyPrefix: 'cl-api', options: { ...options, redis: cluster.client() } })
    const id = { tenantId: 'crowd-' + Math.random().toString(36).slice(2), tier: 'hundred' }
    const decisions = await Promise.all(Array.from({ length: 300 }, (_, i) => (i % 2 === 0 ? a : b).rateLimiter.consume(id)))
    t.equal(decisions.filter(d => d.allowed).length, 100, 'exactly the limit')
    t.equal((await b.rateLimiter.peek(id)).reason, 'rate_limit_exceeded')
    t.same(await a.rateLimiter.refund(id, { cost: 10 }), { minute: 10, hour: 0, month: 10 })
    t.equal((await b.rateLimiter.peek(id, { cost: 10 })).allowed, true, 'the other instance sees the refund')

    // The same counters as HTTP requests of the tenant.
    const web = await buildApp(t, { kind: 'memory', keyPrefix: 'cl-api', options: { ...options, redis: cluster.client(), tenantExtractor: headerTenant } })
    const res = await web.inject({ url: '/', headers: { 'x-tenant': id.tenantId, 'x-tier': 'hundred' } })
    t.equal(res.headers['x-ratelimit-remaining-minute'], '9', 'an HTTP request sees the API\'s 90')
    t.equal((await a.rateLimiter.peek(id, { cost: 0 })).minute.remaining, 9, 'and the API sees it')
  })

  t.test('settle and refundWhen on the cluster', async t => {
    const tiers = { ten: { requestsPerMinute: 10, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null } }
    const app = await buildApp(t, { kind: 'memory', keyPrefix: 'cl-settle', options: { redis: cluster.client(), tenantExtractor: headerTenant, tiers } }, app => {
      app.get('/tokens/:n', async (request) => { request.rateLimit?.settle(Number((request.params as { n: string }).n)); return 'ok' })
      app.get('/fail', { config: { rateLimit: { cost: 4, refundWhen: (_request, reply) => reply.statusCode >= 500 } } }, async () => { throw new Error('down') })
      app.get('/fn/:n', { config: { rateLimit: { cost: (request) => Number((request.params as { n: string }).n) } } }, async () => 'ok')
    })
    const tenant = 'settler-' + Math.random().toString(36).slice(2)
    const headers = { 'x-tenant': tenant, 'x-tier': 'ten' }
    const left = async (): Promise<number> => (await app.rateLimiter.peek({ tenantId: tenant, tier: 'ten' }, { cost: 0 })).minute.remaining
    await app.inject({ url: '/tokens/7', headers })
    t.ok(await within(2000, async () => await left() === 3) < Infinity, 'a settle up counts 7')
    await app.inject({ url: '/tokens/0', headers })
    await app.inject({ url: '/fail', headers })
    await sleep(100)
    t.equal(await left(), 3, 'a settle to 0 and a refunded 500 count nothing')
    t.equal((await app.inject({ url: '/fn/2', headers })).headers['x-ratelimit-remaining-minute'], '1', 'a cost function counts what it returns')
    const bad = await app.inject({ url: '/fn/1.5', headers })
    t.equal(bad.statusCode, 500)
    t.match(bad.json().message, /GET \/fn\/:n/, 'a bad cost names the route')
    t.equal(await left(), 1, 'and counts nothing')
  })

  t.test('leases on the cluster: 404s and clients that leave early give theirs back', async t => {
    let handled = 0
    const app = await buildApp(t, {
      kind: 'memory',
      keyPrefix: 'cl-leases',
      options: {
        redis: cluster.client(),
        tiers: { anonymous: { requestsPerMinute: 1000, requestsPerHour: null, concurrentRequests: 5, monthlyQuota: null } },
        tenantExtractor: async (request) => { if (request.url === '/slow') await sleep(200); return null }
      }
    }, app => {
      app.get('/', async () => 'ok')
      app.get('/slow', async () => { handled++; return 'ok' })
    })
    const port = await listen(app)
    const get = async (path: string): Promise<Response> => await fetch(`http://127.0.0.1:${port}${path}`)
    for (let i = 0; i < 8; i++) t.equal((await get(`/missing-${i}`)).status, 404)
    for (let i = 0; i < 5; i++) await fetch(`http://127.0.0.1:${port}/slow`, { signal: AbortSignal.timeout(50) }).catch(() => {})
    await sleep(300)
    t.equal(handled, 0, 'no handler ran for a client that had gone')
    const next = await get('/')
    t.equal(next.status, 200)
    t.equal(next.headers.get('x-ratelimit-concurrent-remaining'), '4', 'only itself in flight')
  })

  t.test('the slot of a key is the one Redis computes, hash tags and all', async t => {
    const keys = ['plain', '{acme}:all', 'x{}y', '{}{acme}', 'a{b}{c}', '{t:Ångström}:n', 'emoji-🚦{🚦}', '', '{', '}{a}']
    for (let i = 0; i < 50; i++) keys.push(storeKeys('cl', 'tenant', `tenant-${i}-${Math.random()}`, i % 3 === 0 ? 'b' : undefined).counters)
    for (const key of keys) t.equal(keySlot(key), Number(await client.cluster('KEYSLOT', key)), JSON.stringify(key))
  })

  t.test('a master that stops answering degrades only the tenants whose slots it holds', async t => {
    const keyPrefix = 'cl-breaker'
    const app = await buildApp(t, {
      kind: 'memory',
      keyPrefix,
      options: {
        redis: cluster.client(),
        tenantExtractor: headerTenant,
        storeTimeoutMs: 100,
        breakerThreshold: 3,
        breakerCooldownSeconds: 0.5,
        tiers: { wide: { requestsPerMinute: 100_000, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null } }
      }
    })
    // Tenants on every master; the first master's are the ones that will lose it.
    const victim = `127.0.0.1:${cluster.ports[0]}`
    const tenants = Array.from({ length: 30 }, (_, i) => `tenant-${i}`)
    const onVictim = new Set<string>()
    for (const id of tenants) {
      const slot = Number(await client.cluster('KEYSLOT', storeKeys(keyPrefix, 'tenant', id, undefined).counters))
      if (client.slots[slot][0] === victim) onVictim.add(id)
    }
    t.ok(onVictim.size > 0 && onVictim.size < tenants.length, `${onVictim.size} of ${tenants.length} tenants on the master that stops`)
    const degraded = async (id: string): Promise<boolean> =>
      (await app.inject({ url: '/', headers: { 'x-tenant': id, 'x-tier': 'wide' } })).headers['x-ratelimit-status'] === 'degraded'
    for (const id of tenants) t.notOk(await degraded(id), `${id} decided by Redis while every master answers`)

    process.kill(cluster.pids[0], 'SIGSTOP')
    t.teardown(() => { try { process.kill(cluster.pids[0], 'SIGCONT') } catch {} })
    const seen = { victim: 0, healthy: 0 }
    const started = Date.now()
    while (Date.now() - started < 1500) {
      // Every tenant at once, as under load: the stopped master's timeouts come back together.
      const round = await Promise.all(tenants.map(degraded))
      round.forEach((was, i) => { if (was) seen[onVictim.has(tenants[i]) ? 'victim' : 'healthy']++ })
    }
    t.equal(seen.healthy, 0, 'no tenant of a healthy master was degraded')
    t.ok(seen.victim > 0, `the stopped master's tenants were (${seen.victim} degraded answers)`)

    process.kill(cluster.pids[0], 'SIGCONT')
    const back = Date.now()
    let recovered = false
    while (!recovered && Date.now() - back < 5000) {
      recovered = true
      for (const id of onVictim) if (await degraded(id)) recovered = false
    }
    t.ok(recovered, `its tenants are decided by Redis again ${Date.now() - back} ms after it answers`)
  })

  t.test('a standalone PolicyManager on the cluster', async t => {
    const policies = new PolicyManager(cluster.client(), { keyPrefix: 'cl-pm' })
    await policies.start()
    t.teardown(() => policies.close())
    await policies.block('evil', { reason: 'abuse' })
    await policies.setTier('gold', { requestsPerMinute: 5, requestsPerHour: 50, concurrentRequests: 5, monthlyQuota: 500 })
    t.match(await policies.resolve('evil', 'gold'), { blocked: { reason: 'abuse' }, limits: { requestsPerMinute: 5 } })
  })
})
