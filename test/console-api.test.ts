// The admin routes the operator console reads: the tenants table (ordered by an index, each row read
// live), a tenant's capped buckets, the latest quota alerts, the store's health and the multipliers;
// a refused body names its field; the console's page answers only through authorize, with headers
// that keep it to its own origin. On both stores, with real traffic through a real Fastify.
import type { FastifyInstance, HTTPMethods, InjectOptions } from 'fastify'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import rateLimitAdmin, { type AdminOptions } from '../dist/admin.js'
import rateLimiting from '../dist/index.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { privateRedis } from './helpers/redis.js'
import { STORE_KINDS, type StoreKind } from './helpers/stores.js'

const PREFIX = '/admin/rate-limits'
const TOKEN = { 'x-admin-token': 'secret' }
const TIERS = { small: { requestsPerMinute: 100, requestsPerHour: 1000, concurrentRequests: 10, monthlyQuota: 20 } }

const authorize: AdminOptions['authorize'] = async request => {
  if (request.headers['x-admin-token'] !== 'secret') throw Object.assign(new Error('admin token required'), { statusCode: 401 })
}

async function consoleApp (t: Test, kind: StoreKind): Promise<FastifyInstance> {
  return await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: TIERS, defaultTier: 'small', environment: 'staging' } }, app => {
    app.get('/', async () => ({ ok: true }))
    app.get('/export', { config: { rateLimit: { bucket: 'exports', limits: { monthlyQuota: 5 } } } }, async () => ({ ok: true }))
    app.register(rateLimitAdmin, { prefix: PREFIX, authorize })
  })
}

async function call (app: FastifyInstance, method: string, path: string, payload?: unknown): Promise<Awaited<ReturnType<FastifyInstance['inject']>>> {
  const options: InjectOptions = { method: method as HTTPMethods, url: PREFIX + path, headers: TOKEN }
  if (payload !== undefined) options.payload = payload as InjectOptions['payload']
  return await app.inject(options)
}

async function traffic (app: FastifyInstance, tenant: string, n: number, url = '/'): Promise<void> {
  for (let i = 0; i < n; i++) await app.inject({ url, headers: { 'x-tenant': tenant } })
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    t.test('the tenants table: ordered, searched, paged; each row read now', async t => {
      const app = await consoleApp(t, kind)
      await traffic(app, 'alpha', 12)
      await traffic(app, 'beta', 3)
      await traffic(app, 'gamma', 7)
      await traffic(app, 'Alphabet', 1)
      await app.policies.setTenantOverride('idle-vip', { requestsPerMinute: 1000 })
      const first = await call(app, 'GET', '/tenants')
      t.equal(first.statusCode, 200)
      const page = first.json()
      t.equal(page.month, new Date().toISOString().slice(0, 7))
      t.equal(page.total, 5, 'four tenants with usage, one with an override only')
      t.same(page.rows.map((r: { tenantId: string }) => r.tenantId), ['alpha', 'gamma', 'beta', 'Alphabet', 'idle-vip'], 'by share of the quota, highest first')
      t.match(page.rows[0], {
        tenantId: 'alpha',
        tier: 'small',
        organizationId: null,
        month: { used: 12, limit: 20 },
        minute: { used: 12, limit: 100 },
        hour: { used: 12, limit: 1000 },
        concurrent: { inFlight: 0, limit: 10 },
        override: false,
        blocked: false,
        shadow: false
      })
      t.match(page.rows[4], { tenantId: 'idle-vip', override: true, minute: { used: 0, limit: 1000 } })

      // Rows are read live; the order stays the index's until it is rebuilt.
      await traffic(app, 'beta', 2)
      await app.policies.block('beta', { reason: 'abuse' })
      const live = (await call(app, 'GET', '/tenants?search=beta')).json()
      t.match(live, { total: 1, rows: [{ tenantId: 'beta', minute: { used: 5 }, month: { used: 5 }, blocked: true }] })

      const byId = (await call(app, 'GET', '/tenants?sort=tenantId&order=asc')).json()
      t.same(byId.rows.map((r: { tenantId: string }) => r.tenantId), ['Alphabet', 'alpha', 'beta', 'gamma', 'idle-vip'])
      const search = (await call(app, 'GET', '/tenants?search=ALPHA&sort=used&order=asc')).json()
      t.same(search.rows.map((r: { tenantId: string }) => r.tenantId), ['Alphabet', 'alpha'], 'case-insensitive substring')
      const paged = (await call(app, 'GET', '/tenants?sort=tenantId&order=desc&offset=1&limit=2')).json()
      t.match(paged, { total: 5, offset: 1, limit: 2 })
      t.same(paged.rows.map((r: { tenantId: string }) => r.tenantId), ['gamma', 'beta'])
      const past = (await call(app, 'GET', '/tenants?offset=10')).json()
      t.match(past, { total: 5, rows: [] }, 'past the end: no rows')

      for (const [query, field] of [['limit=0', 'limit'], ['limit=201', 'limit'], ['offset=-1', 'offset'], ['sort=bogus', 'sort'], ['order=up', 'order'], ['page=2', 'page']]) {
        const refused = await call(app, 'GET', '/tenants?' + query)
        t.equal(refused.statusCode, 400, `${query} refused`)
        t.match(refused.json().message, field, `naming ${field}`)
      }
    })

    t.test('the share orders by the quota as it stands, not as the last admission saw it', async t => {
      const app = await consoleApp(t, kind)
      await traffic(app, 'alpha', 12) // 12 of 20
      await traffic(app, 'gamma', 7) // 7 of 20 when counted...
      await app.policies.setTenantOverride('gamma', { monthlyQuota: 8 }) // ...7 of 8 now
      await app.policies.setEnvironmentMultiplier('staging', 0.5) // alpha: 12 of 10
      const page = (await call(app, 'GET', '/tenants')).json()
      t.same(page.rows.map((r: { tenantId: string, month: { limit: number } }) => [r.tenantId, r.month.limit]), [['gamma', 4], ['alpha', 10]], '7 of 4 before 12 of 10')
      await app.policies.setEnvironmentMultiplier('staging', 1)
      await app.policies.setTenantOverride('gamma', { monthlyQuota: null }) // 7 of unlimited: no share
      // The index is rebuilt once over 2 s old (a page asked for then starts it; a later one sees it).
      let order: string[] = []
      for (const deadline = Date.now() + 6000; order[0] !== 'alpha' && Date.now() < deadline;) {
        await new Promise(resolve => setTimeout(resolve, 50))
        order = (await call(app, 'GET', '/tenants')).json().rows.map((r: { tenantId: string }) => r.tenantId)
      }
      t.same(order, ['alpha', 'gamma'], 'rebuilt: an unlimited quota sorts as no share at all')
    })

    t.test('a tenant\'s buckets with a cap of their own', async t => {
      const app = await consoleApp(t, kind)
      await traffic(app, 'acme', 3, '/export')
      await traffic(app, 'acme', 1)
      const reply = await call(app, 'GET', '/tenants/acme/buckets')
      t.equal(reply.statusCode, 200)
      t.match(reply.json(), { buckets: [{ bucket: 'exports', used: 3, quota: 5, usage: { bucket: 'exports', minute: { used: 3 } } }] })
      t.same((await call(app, 'GET', '/tenants/nobody/buckets')).json().buckets, [], 'none for a tenant without usage')
    })

    t.test('the latest quota alerts, all or one tenant\'s, newest first', async t => {
      const app = await consoleApp(t, kind)
      await traffic(app, 'acme', 16) // 0.8 of 20
      await traffic(app, 'globex', 18) // 0.8 and 0.9
      let events: Array<{ tenantId: string, threshold: number }> = []
      for (let i = 0; i < 50 && events.length < 3; i++) {
        const reply = (await call(app, 'GET', '/events')).json()
        t.equal(reply.source, kind === 'redis' ? 'stream' : 'process')
        events = reply.events
        if (events.length < 3) await new Promise(resolve => setTimeout(resolve, 20))
      }
      t.same(events.map(e => [e.tenantId, e.threshold]), [['globex', 0.9], ['globex', 0.8], ['acme', 0.8]])
      const acme = (await call(app, 'GET', '/events?tenantId=acme&limit=5')).json()
      t.same(acme.events.map((e: { threshold: number }) => e.threshold), [0.8])
      t.same((await call(app, 'GET', '/events?limit=1')).json().events.length, 1)
      t.equal((await call(app, 'GET', '/events?limit=abc')).statusCode, 400)
    })

    t.test('health and multipliers', async t => {
      const app = await consoleApp(t, kind)
      const health = (await call(app, 'GET', '/health')).json()
      t.match(health, { store: kind, reachable: kind === 'redis' ? true : null, breaker: 'closed', openNodes: [], fallback: false, degraded: { admitted: 0, refused: 0, lastAt: null } })
      t.equal(typeof health.pingMs, kind === 'redis' ? 'number' : 'object')
      await app.policies.setEnvironmentMultiplier('staging', 2)
      await app.policies.setEnvironmentMultiplier('canary', 0.5)
      t.same((await call(app, 'GET', '/multipliers')).json(), { environment: 'staging', multipliers: { staging: 2, canary: 0.5 } })
    })

    t.test('a refused body names its field; nothing is stored', async t => {
      const app = await consoleApp(t, kind)
      const cases: Array<[string, string, unknown, string]> = [
        ['PUT', '/tenants/acme/override', { requestsPerMinute: -5 }, 'requestsPerMinute'],
        ['PUT', '/tenants/acme/override', { requestsPerMinute: 'abc' }, 'requestsPerMinute'],
        ['PUT', '/tenants/acme/override', { expiresInSeconds: 0 }, 'expiresInSeconds'],
        ['PUT', '/tenants/acme/override', { colour: 1 }, 'colour'],
        ['PUT', '/tenants/acme/block', { seconds: 'soon' }, 'seconds'],
        ['PUT', '/tenants/acme/tier', { tier: 'no such!' }, 'tier'],
        ['PUT', '/multipliers/staging', { multiplier: 0 }, 'multiplier']
      ]
      for (const [method, path, body, field] of cases) {
        const reply = await call(app, method, path, body)
        t.equal(reply.statusCode, 400, `${JSON.stringify(body)} refused`)
        t.match(reply.json(), { statusCode: 400, code: 'FST_MAESTRO_RL_INVALID_POLICY', error: 'Bad Request', field }, `names ${field}: ${reply.json().message}`)
        t.match(reply.json().message, field)
      }
      t.equal(await app.policies.getTenantOverride('acme'), null)
      t.equal((await app.policies.resolve('acme')).blocked, null)
      t.equal(await app.policies.getEnvironmentMultiplier('staging'), 1)
      const unauthorized = await app.inject({ method: 'PUT', url: PREFIX + '/tenants/acme/override', payload: { requestsPerMinute: -5 } })
      t.equal(unauthorized.statusCode, 401, 'authorize still comes first')
    })

    t.test('the console page answers only through authorize, and keeps to its own origin', async t => {
      const app = await consoleApp(t, kind)
      for (const path of ['/ui', '/ui/', '/ui/index.html', '/ui/nothing.js']) {
        const refused = await app.inject({ url: PREFIX + path })
        t.equal(refused.statusCode, 401, `${path} refused without credentials`)
        t.notMatch(refused.body, /<html|<script/i, 'nothing of the page')
      }
      const redirect = await call(app, 'GET', '/ui')
      t.equal(redirect.statusCode, 302)
      t.equal(redirect.headers.location, 'ui/', 'relative, so any prefix works')
      const page = await call(app, 'GET', '/ui/')
      t.equal(page.statusCode, 200)
      t.match(page.headers['content-type'], 'text/html')
      t.match(page.headers['content-security-policy'], "default-src 'none'")
      t.match(page.headers['content-security-policy'], "frame-ancestors 'none'")
      t.equal(page.headers['cache-control'], 'no-store')
      t.equal(page.headers['x-content-type-options'], 'nosniff')
      const missing = await call(app, 'GET', '/ui/..%2Fadmin.js')
      t.equal(missing.statusCode, 404, 'only the files of the assets folder')
    })
  })
}

t.test('the tenants table on a Redis that stops answering: a clear error, and health says so', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1 })
  t.teardown(() => redis.disconnect())
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { redis, keyPrefix: 'console-paused', tenantExtractor: headerTenant, storeTimeoutMs: 200 })
  app.get('/', async () => ({ ok: true }))
  await app.register(rateLimitAdmin, { prefix: PREFIX, authorize })
  await app.ready()
  await traffic(app, 'acme', 2)
  t.equal((await call(app, 'GET', '/tenants')).json().total, 1)
  server.pause()
  t.teardown(() => server.resume())
  const started = Date.now()
  const health = (await call(app, 'GET', '/health')).json()
  t.match(health, { store: 'redis', reachable: false, pingMs: null })
  t.ok(Date.now() - started < 3000, 'health answers within its deadline')
  server.resume()
  t.equal((await call(app, 'GET', '/health')).json().reachable, true, 'and sees Redis back')
})

t.test('a server that ignores trailing slashes serves the page too', async t => {
  const app = Fastify({ routerOptions: { ignoreTrailingSlash: true } })
  t.teardown(() => app.close())
  await app.register(rateLimiting, { store: 'memory', tenantExtractor: headerTenant })
  await app.register(rateLimitAdmin, { prefix: PREFIX, authorize })
  await app.ready()
  t.equal((await call(app, 'GET', '/ui')).statusCode, 302)
  t.equal((await call(app, 'GET', '/ui/')).statusCode, 200)
})
