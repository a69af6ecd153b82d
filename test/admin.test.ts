// @maestro/rate-limiting/admin on both stores: registration, authorization, every route, bad input.
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest, type FastifySchema, type HTTPMethods, type InjectOptions } from 'fastify'
import t from 'tap'
import rateLimitAdmin, { adminSchemas, type AdminOptions } from '../dist/admin.js'
import rateLimiting from '../dist/index.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { STORE_KINDS, type StoreKind } from './helpers/stores.js'

const PREFIX = '/admin/rate-limits'
const TOKEN = { 'x-admin-token': 'secret' }

/** The service's check: a missing or wrong token is refused with 401. */
const authorize: AdminOptions['authorize'] = async (request: FastifyRequest) => {
  if (request.headers['x-admin-token'] !== 'secret') throw Object.assign(new Error('admin token required'), { statusCode: 401 })
}

async function adminApp (t: { teardown (fn: () => unknown): void }, kind: StoreKind, options: Partial<AdminOptions> = {}, extra?: (app: FastifyInstance) => void): Promise<FastifyInstance> {
  return await buildApp(t, { kind, options: { tenantExtractor: headerTenant, environment: 'staging' } }, app => {
    app.get('/', async () => ({ ok: true }))
    extra?.(app)
    app.register(rateLimitAdmin, { prefix: PREFIX, authorize, ...options })
  })
}

/** An admin request with the token (unless headers say otherwise). */
async function call (app: FastifyInstance, method: string, path: string, payload?: unknown, headers: Record<string, string> = TOKEN): Promise<Awaited<ReturnType<FastifyInstance['inject']>>> {
  const options: InjectOptions = { method: method as HTTPMethods, url: PREFIX + path, headers }
  if (payload !== undefined) options.payload = payload as InjectOptions['payload']
  return await app.inject(options)
}

/** What fastify.policies reports, as one comparable string. */
async function snapshot (app: FastifyInstance): Promise<string> {
  const p = app.policies
  return JSON.stringify([
    await p.resolve('acme'), await p.getTenantOverride('acme'), await p.getTenantTier('acme'), await p.listTiers(),
    await p.shadowModes(), await p.getEnvironmentMultiplier('staging'), (await p.usage('acme')).minute
  ])
}

/** The message fastify.policies itself gives for the same input. */
async function policyMessage (attempt: () => Promise<unknown>): Promise<string | undefined> {
  try {
    await attempt()
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

const json = (value: unknown): unknown => JSON.parse(JSON.stringify(value))
const GOLD = { requestsPerMinute: 70, requestsPerHour: 700, concurrentRequests: null, monthlyQuota: 7000 }

t.test('exported as @maestro/rate-limiting/admin', async t => {
  const published = await import('@maestro/rate-limiting/admin')
  t.equal(published.default, rateLimitAdmin)
  t.equal(published.adminSchemas, adminSchemas)
})

t.test('refuses to register without authorize', async t => {
  for (const options of [{}, { authorize: undefined }, { authorize: 'yes' }]) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(rateLimiting)
    await t.rejects(async () => { await app.register(rateLimitAdmin, options as never).ready() }, {
      code: 'FST_MAESTRO_RL_ADMIN_AUTHORIZATION_REQUIRED',
      message: /needs an authorize\(request, reply\) function/
    }, JSON.stringify(options))
  }
})

t.test('refuses to register without the rate-limiting plugin', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await t.rejects(async () => { await app.register(rateLimitAdmin, { authorize }).ready() }, { message: /dependency '@maestro\/rate-limiting'/ })
})

t.test('authorize may throw synchronously or reject with anything: the request is refused', async t => {
  const refusals: Array<AdminOptions['authorize']> = [
    (request: FastifyRequest) => { if (request.headers['x-admin-token'] !== 'secret') throw Object.assign(new Error('forbidden'), { statusCode: 403 }) },
    async (request: FastifyRequest) => { if (request.headers['x-admin-token'] !== 'secret') throw 'no' }, // eslint-disable-line no-throw-literal
    async (request: FastifyRequest) => { if (request.headers['x-admin-token'] !== 'secret') await Promise.reject() } // eslint-disable-line prefer-promise-reject-errors
  ]
  for (const refusal of refusals) {
    const app = await adminApp(t, 'memory', { authorize: refusal })
    const res = await call(app, 'PUT', '/tiers/gold', GOLD, {})
    t.equal(res.statusCode, 403)
    t.equal((await app.policies.listTiers()).gold, undefined, 'nothing written')
    t.equal((await call(app, 'PUT', '/tiers/gold', GOLD)).statusCode, 200)
  }
})

t.test('the schemas are plain JSON Schema that Fastify\'s default ajv compiles', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  for (const [key, schema] of Object.entries(adminSchemas)) {
    const [method, url] = key.split(' ')
    app.route({ method: method as HTTPMethods, url, schema: schema as FastifySchema, handler: async (_request, reply) => await reply.code(204).send() })
  }
  await app.ready()
  t.equal((await app.inject({ method: 'PUT', url: '/tiers/gold', payload: GOLD })).statusCode, 204)
  const bad = await app.inject({ method: 'PUT', url: '/tiers/gold', payload: { ...GOLD, requestsPerHour: -1 } })
  t.equal(bad.statusCode, 400)
  t.equal(bad.json().code, 'FST_ERR_VALIDATION')
})

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    t.test('authorize runs first on every admin route', async t => {
      const app = await adminApp(t, kind)
      const before = await snapshot(app)
      for (const key of Object.keys(adminSchemas)) {
        const [method, path] = key.split(' ')
        const url = path.replace(':tenantId', 'acme').replace(':organizationId', 'acme').replace(':name', 'gold').replace(':environment', 'staging')
        const res = await call(app, method, url, method === 'PUT' ? { requestsPerMinute: 1 } : undefined, {})
        t.equal(res.statusCode, 401, `${key} without a token`)
        t.equal(res.json().message, 'admin token required')
        const wrong = await call(app, method, url, undefined, { 'x-admin-token': 'guess' })
        t.equal(wrong.statusCode, 401, `${key} with a wrong token`)
      }
      t.equal(await snapshot(app), before, 'nothing changed')
      t.equal((await call(app, 'GET', '/tiers')).statusCode, 200, 'the token opens them')
    })

    t.test('authorize may reply itself: the route then never runs, even behind an async onSend hook', async t => {
      const replying: AdminOptions['authorize'] = async (request: FastifyRequest, reply: FastifyReply) => {
        if (request.headers['x-admin-token'] !== 'secret') await reply.code(403).send({ message: 'forbidden' })
      }
      const app = await adminApp(t, kind, { authorize: replying }, app => {
        app.addHook('onSend', async (_request, _reply, payload) => { await sleep(20); return payload })
      })
      const res = await call(app, 'PUT', '/tenants/acme/override', { requestsPerMinute: 1 }, {})
      t.equal(res.statusCode, 403)
      t.same(res.json(), { message: 'forbidden' })
      await sleep(50)
      t.equal(await app.policies.getTenantOverride('acme'), null, 'the override was not written')
      t.equal((await call(app, 'PUT', '/tenants/acme/override', { requestsPerMinute: 1 })).statusCode, 200)
    })

    t.test('routes live under the register prefix and are neither limited nor counted', async t => {
      const app = await adminApp(t, kind)
      for (let i = 0; i < 8; i++) {
        const res = await call(app, 'GET', '/shadow')
        t.equal(res.statusCode, 200)
        t.notOk(res.headers['x-ratelimit-limit-minute'], 'no rate-limit headers')
      }
      t.equal((await app.inject({ url: '/' })).headers['x-ratelimit-remaining-minute'], '4', 'the anonymous limit of 5 is untouched')
      t.equal((await app.inject({ url: '/tiers', headers: TOKEN })).statusCode, 404, 'not at the root')
    })

    t.test('tenants: resolve, override, tier, block', async t => {
      const app = await adminApp(t, kind)
      const limitFor = async (tenant: string): Promise<unknown> =>
        (await app.inject({ url: '/', headers: { 'x-tenant': tenant } })).headers['x-ratelimit-limit-minute']

      let res = await call(app, 'GET', '/tenants/acme')
      t.equal(res.statusCode, 200)
      t.same(res.json(), json(await app.policies.resolve('acme')))
      t.match(res.json(), { tier: 'starter', tierSource: 'default', environment: 'staging', multiplier: 1, override: null, blocked: null, shadow: false })
      t.match((await call(app, 'GET', '/tenants/acme?tier=enterprise')).json(), { tier: 'enterprise', tierSource: 'request', limits: { requestsPerMinute: 500 } })

      // Override: field by field over the tier.
      res = await call(app, 'PUT', '/tenants/acme/override', { requestsPerMinute: 42, monthlyQuota: null })
      t.equal(res.statusCode, 200)
      t.same(res.json(), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
      t.same(await app.policies.getTenantOverride('acme'), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
      t.equal(await limitFor('acme'), '42', 'live on the request path')
      t.same((await call(app, 'GET', '/tenants/acme/override')).json(), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
      t.match((await call(app, 'GET', '/tenants/acme')).json(), { sources: { requestsPerMinute: 'override', requestsPerHour: 'tier', monthlyQuota: 'override' } })
      res = await call(app, 'PUT', '/tenants/acme/override', { requestsPerHour: 300, expiresInSeconds: 60 })
      t.ok(res.json().expiresAt > Date.now(), 'an expiry is reported as a time')
      t.same(await app.policies.getTenantOverride('acme'), res.json())
      res = await call(app, 'DELETE', '/tenants/acme/override')
      t.equal(res.statusCode, 204)
      t.equal(res.body, '')
      t.equal(await app.policies.getTenantOverride('acme'), null)
      t.equal(await limitFor('acme'), '10')
      t.equal((await call(app, 'GET', '/tenants/acme/override')).statusCode, 404)

      // The tenant's stored tier.
      res = await call(app, 'PUT', '/tenants/acme/tier', { tier: 'enterprise' })
      t.same(res.json(), { tenantId: 'acme', tier: 'enterprise' })
      t.equal(await app.policies.getTenantTier('acme'), 'enterprise')
      t.match((await call(app, 'GET', '/tenants/acme')).json(), { tier: 'enterprise', tierSource: 'tenant' })
      t.equal(await limitFor('acme'), '500')
      t.equal((await call(app, 'DELETE', '/tenants/acme/tier')).statusCode, 204)
      t.equal(await app.policies.getTenantTier('acme'), null)

      // Blocks.
      res = await call(app, 'PUT', '/tenants/acme/block', { reason: 'scraping', seconds: 60 })
      t.equal(res.statusCode, 200)
      t.match(res.json(), { tenantId: 'acme', blocked: { reason: 'scraping' } })
      t.ok(res.json().blocked.expiresAt > Date.now())
      t.same((await app.policies.resolve('acme')).blocked, res.json().blocked)
      const blocked = await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })
      t.equal(blocked.statusCode, 403)
      t.equal(blocked.json().code, 'FST_MAESTRO_RL_BLOCKED')
      t.same((await call(app, 'PUT', '/tenants/other/block', {})).json(), { tenantId: 'other', blocked: { reason: null, expiresAt: null } })
      t.equal((await call(app, 'DELETE', '/tenants/acme/block')).statusCode, 204)
      t.equal((await app.policies.resolve('acme')).blocked, null)
      t.equal((await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })).statusCode, 200)
    })

    t.test('usage and its reset', async t => {
      const app = await adminApp(t, kind)
      for (let i = 0; i < 3; i++) await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })
      let res = await call(app, 'GET', '/tenants/acme/usage')
      t.equal(res.statusCode, 200)
      t.match(res.json(), { tenantId: 'acme', tier: 'starter', bucket: null, minute: { limit: 10, used: 3, remaining: 7 }, concurrent: { limit: 10 } })
      t.same(res.json().month, json((await app.policies.usage('acme')).month))
      res = await call(app, 'GET', '/tenants/acme/usage?bucket=search')
      t.match(res.json(), { bucket: 'search', minute: { used: 0 } })
      res = await call(app, 'DELETE', '/tenants/acme/usage')
      t.equal(res.statusCode, 204)
      t.match(await app.policies.usage('acme'), { minute: { used: 0 }, month: { used: 0 } })
    })

    t.test('tiers, multipliers and shadow mode', async t => {
      const app = await adminApp(t, kind)
      let res = await call(app, 'GET', '/tiers')
      t.same(res.json(), json(await app.policies.listTiers()))
      t.same(res.json().starter, { limits: { requestsPerMinute: 10, requestsPerHour: 100, concurrentRequests: 10, monthlyQuota: 10000 }, source: 'configured' })
      res = await call(app, 'PUT', '/tiers/gold', GOLD)
      t.same(res.json(), { name: 'gold', limits: GOLD, source: 'runtime' })
      t.same((await app.policies.listTiers()).gold, { limits: GOLD, source: 'runtime' })
      t.equal((await app.inject({ url: '/', headers: { 'x-tenant': 'a', 'x-tier': 'gold' } })).headers['x-ratelimit-limit-minute'], '70')
      t.equal((await call(app, 'DELETE', '/tiers/gold')).statusCode, 204)
      t.equal((await app.policies.listTiers()).gold, undefined)

      t.same((await call(app, 'GET', '/multipliers/staging')).json(), { environment: 'staging', multiplier: 1 })
      res = await call(app, 'PUT', '/multipliers/staging', { multiplier: 0.5 })
      t.same(res.json(), { environment: 'staging', multiplier: 0.5 })
      t.equal(await app.policies.getEnvironmentMultiplier('staging'), 0.5)
      t.match((await call(app, 'GET', '/tenants/acme')).json(), { multiplier: 0.5, limits: { requestsPerMinute: 5, requestsPerHour: 50 } })
      t.same((await call(app, 'PUT', '/multipliers/production', { multiplier: 3 })).json(), { environment: 'production', multiplier: 3 })
      t.same((await call(app, 'GET', '/multipliers/production')).json(), { environment: 'production', multiplier: 3 })
      t.equal((await call(app, 'DELETE', '/multipliers/staging')).statusCode, 204)
      t.equal(await app.policies.getEnvironmentMultiplier('staging'), 1)

      t.same((await call(app, 'GET', '/shadow')).json(), { global: false, tiers: [], tenants: [] })
      t.same((await call(app, 'PUT', '/shadow', { scope: 'tenant', tenantId: 'trial', enabled: true })).json(), { global: false, tiers: [], tenants: ['trial'] })
      t.same((await call(app, 'PUT', '/shadow', { scope: 'tier', tier: 'starter', enabled: true })).json(), { global: false, tiers: ['starter'], tenants: ['trial'] })
      t.same((await call(app, 'PUT', '/shadow', { scope: 'global', enabled: true })).json(), { global: true, tiers: ['starter'], tenants: ['trial'] })
      t.same(await app.policies.shadowModes(), { global: true, tiers: ['starter'], tenants: ['trial'] })
      t.equal((await app.policies.resolve('acme')).shadow, true)
      await call(app, 'PUT', '/shadow', { scope: 'global', enabled: false })
      await call(app, 'PUT', '/shadow', { scope: 'tier', tier: 'starter', enabled: false })
      t.same((await call(app, 'GET', '/shadow')).json(), { global: false, tiers: [], tenants: ['trial'] })
      t.same(await app.policies.shadowModes(), { global: false, tiers: [], tenants: ['trial'] })
    })

    t.test('removals of nothing answer 404', async t => {
      const app = await adminApp(t, kind)
      for (const path of ['/tenants/acme/override', '/tenants/acme/tier', '/tenants/acme/block', '/tiers/gold', '/multipliers/staging']) {
        const res = await call(app, 'DELETE', path)
        t.equal(res.statusCode, 404, path)
        t.match(res.json(), { statusCode: 404, error: 'Not Found', message: /acme|gold|staging/ })
      }
      t.equal((await call(app, 'GET', '/tenants/acme/override')).json().message, 'tenant acme has no override')
      t.equal((await call(app, 'DELETE', '/tiers/starter')).statusCode, 404, 'a configured tier is not removable')
    })

    t.test('bad input answers 400 with the policy message and changes nothing', async t => {
      const app = await adminApp(t, kind)
      await app.policies.setTenantOverride('acme', { requestsPerMinute: 5 })
      const before = await snapshot(app)
      const p = app.policies
      const long = 'e'.repeat(65)
      // [method, path, body, expected message, the same input given to fastify.policies]
      const cases: Array<[string, string, unknown, RegExp, (() => Promise<unknown>)?]> = [
        ['PUT', '/tenants/acme/override', { requestsPerMinute: -1 }, /override\.requestsPerMinute must be >= 0/, async () => await p.setTenantOverride('acme', { requestsPerMinute: -1 })],
        ['PUT', '/tenants/acme/override', { requestsPerMinit: 5 }, /override\.requestsPerMinit is not a known field/, async () => await p.setTenantOverride('acme', { requestsPerMinit: 5 } as never)],
        ['PUT', '/tenants/acme/override', { requestsPerMinute: 5, requestsPerMinit: 5 }, /override\.requestsPerMinit is not a known field/],
        ['PUT', '/tenants/acme/override', { requestsPerMinute: '5' }, /override\.requestsPerMinute must be integer/, async () => await p.setTenantOverride('acme', { requestsPerMinute: '5' } as never)],
        ['PUT', '/tenants/acme/override', { requestsPerMinute: 1.5 }, /override\.requestsPerMinute/],
        ['PUT', '/tenants/acme/override', {}, /override must set at least one limit/, async () => await p.setTenantOverride('acme', {})],
        ['PUT', '/tenants/acme/override', undefined, /override must be object/],
        ['PUT', '/tenants/acme/override', { requestsPerMinute: 5, expiresInSeconds: -3 }, /override\.expiresInSeconds/, async () => await p.setTenantOverride('acme', { requestsPerMinute: 5, expiresInSeconds: -3 })],
        ['PUT', '/tenants/acme/tier', { tier: 'gold' }, /tier gold is not defined/, async () => await p.setTenantTier('acme', 'gold')],
        ['PUT', '/tenants/acme/tier', { tier: 'bad name' }, /tier must match pattern/, async () => await p.setTenantTier('acme', 'bad name')],
        ['PUT', '/tenants/acme/block', { seconds: 0 }, /block\.seconds must be > 0/, async () => await p.block('acme', { seconds: 0 })],
        ['PUT', '/tenants/acme/block', { reason: 7 }, /block\.reason must be string/, async () => await p.block('acme', { reason: 7 } as never)],
        ['PUT', '/tiers/bad%20name', GOLD, /name must match pattern/, async () => await p.setTier('bad name', GOLD)],
        ['PUT', '/tiers/gold', { requestsPerMinute: 1 }, /limits\.requestsPerHour is required/, async () => await p.setTier('gold', { requestsPerMinute: 1 } as never)],
        ['PUT', '/multipliers/staging', { multiplier: 0 }, /multiplier must be > 0/, async () => await p.setEnvironmentMultiplier('staging', 0)],
        ['PUT', '/multipliers/staging', { multiplier: '2' }, /multiplier must be number/, async () => await p.setEnvironmentMultiplier('staging', '2' as never)],
        ['PUT', '/multipliers/staging', {}, /multiplier is required/],
        ['PUT', `/multipliers/${long}`, { multiplier: 2 }, /environment must not have more than 64/, async () => await p.setEnvironmentMultiplier(long, 2)],
        ['PUT', '/shadow', { scope: 'planet', enabled: true }, /scope/],
        ['PUT', '/shadow', { scope: 'global', enabled: 'yes' }, /enabled must be boolean/],
        ['PUT', '/shadow', { scope: 'tier', enabled: true }, /scope tier takes a tier/],
        ['PUT', '/shadow', { scope: 'global', tenantId: 'acme', enabled: true }, /scope global takes no tier nor tenantId/],
        ['GET', '/tenants/acme?tier=bad%20name', undefined, /tier must match pattern/, async () => await p.resolve('acme', 'bad name')],
        ['GET', '/tenants/acme?tier=gold&verbose=1', undefined, /verbose is not a known field/],
        ['GET', '/tenants/acme/usage?bucket=', undefined, /bucket must not have fewer than 1 characters/]
      ]
      for (const [method, path, body, message, direct] of cases) {
        const res = await call(app, method, path, body)
        const name = `${method} ${path} ${JSON.stringify(body)}`
        t.equal(res.statusCode, 400, name)
        t.match(res.json(), { statusCode: 400, code: 'FST_MAESTRO_RL_INVALID_POLICY', message }, name)
        if (direct !== undefined) t.equal(res.json().message, await policyMessage(direct), `${name}: the message fastify.policies gives`)
      }
      t.equal(await snapshot(app), before, 'nothing changed')
    })
  })
}

t.test('a number too large for a double (1e400, Infinity once parsed) is refused over HTTP, never taken as unlimited', async t => {
  const app = await adminApp(t, 'memory')
  const put = async (path: string, body: string): Promise<number> => (await app.inject({
    method: 'PUT', url: PREFIX + path, headers: { ...TOKEN, 'content-type': 'application/json' }, payload: body
  })).statusCode
  t.equal(await put('/tenants/acme/override', '{"requestsPerMinute":1e400}'), 400, 'an override')
  t.equal(await put('/tiers/gold', '{"requestsPerMinute":1e400,"requestsPerHour":1,"concurrentRequests":1,"monthlyQuota":1}'), 400, 'a tier')
  t.equal(await put('/multipliers/staging', '{"multiplier":1e400}'), 400, 'a multiplier')
  t.equal(await put('/tenants/acme/block', '{"seconds":1e400}'), 400, 'a block\'s duration')
  t.equal(await app.policies.getTenantOverride('acme'), null, 'nothing was stored')
  t.equal((await app.policies.listTiers()).gold, undefined)
  t.equal(await app.policies.getEnvironmentMultiplier('staging'), 1)
})
