// The admin routes for organizations and shared route budgets, on both stores: each answers what
// fastify.policies answers, refuses bad input with the policy's message, and changes nothing then.
import type { FastifyInstance, HTTPMethods, InjectOptions } from 'fastify'
import type { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import rateLimitAdmin, { type AdminOptions } from '../dist/admin.js'
import { RedisStore, type TierLimits } from '../dist/index.js'
import { storeKeys, type SubjectKind } from '../dist/keys.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'
import { STORE_KINDS, type StoreKind } from './helpers/stores.js'

const PREFIX = '/admin/rate-limits'
const TOKEN = { 'x-admin-token': 'secret' }
const LIMITED: TierLimits = { requestsPerMinute: 100, requestsPerHour: 1000, concurrentRequests: 10, monthlyQuota: 10_000 }

const authorize: AdminOptions['authorize'] = async request => {
  if (request.headers['x-admin-token'] !== 'secret') throw Object.assign(new Error('admin token required'), { statusCode: 401 })
}

async function adminApp (t: Test, kind: StoreKind, keyPrefix?: string): Promise<FastifyInstance> {
  return await buildApp(t, { kind, keyPrefix, options: { tenantExtractor: headerTenant, environment: 'staging' } }, app => {
    app.get('/', async () => ({ ok: true }))
    app.register(rateLimitAdmin, { prefix: PREFIX, authorize })
  })
}

async function call (app: FastifyInstance, method: string, path: string, payload?: unknown): Promise<Awaited<ReturnType<FastifyInstance['inject']>>> {
  const options: InjectOptions = { method: method as HTTPMethods, url: PREFIX + path, headers: TOKEN }
  if (payload !== undefined) options.payload = payload as InjectOptions['payload']
  return await app.inject(options)
}

/** Counts `n` admissions in a subject's counters with the store itself (no request path needed). */
async function count (t: Test, redis: Redis, prefix: string, kind: SubjectKind, id: string, n: number, organizationId?: string): Promise<void> {
  const store = new RedisStore({ client: redis })
  t.teardown(() => store.close())
  const keys = storeKeys(prefix, kind, id, undefined, organizationId)
  for (let i = 0; i < n; i++) await store.admit({ keys, cost: 1, limits: LIMITED, leaseId: `${id}-${i}` })
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    t.test('override: put, get, delete; the resolved organization reflects it', async t => {
      const app = await adminApp(t, kind)
      t.equal((await call(app, 'GET', '/organizations/acme/override')).statusCode, 404)
      const put = await call(app, 'PUT', '/organizations/acme/override', { requestsPerMinute: 42, monthlyQuota: null, expiresInSeconds: 60 })
      t.equal(put.statusCode, 200)
      t.match(put.json(), { requestsPerMinute: 42, monthlyQuota: null })
      t.ok(put.json().expiresAt > Date.now(), 'with its expiry')
      t.same((await call(app, 'GET', '/organizations/acme/override')).json(), await app.policies.getOrganizationOverride('acme'))
      const resolved = await call(app, 'GET', '/organizations/acme')
      t.equal(resolved.statusCode, 200)
      t.same(resolved.json(), JSON.parse(JSON.stringify(await app.policies.resolveOrganization('acme'))))
      t.match(resolved.json(), { organizationId: 'acme', tier: null, tierSource: 'none', limits: { requestsPerMinute: 42, requestsPerHour: null } })
      t.equal((await call(app, 'DELETE', '/organizations/acme/override')).statusCode, 204)
      const again = await call(app, 'DELETE', '/organizations/acme/override')
      t.equal(again.statusCode, 404)
      t.equal(again.json().message, 'organization acme has no override')
      t.equal(await app.policies.getOrganizationOverride('acme'), null)
    })

    t.test('tier: put, get, delete; ?tier= on the resolved organization', async t => {
      const app = await adminApp(t, kind)
      t.equal((await call(app, 'GET', '/organizations/acme/tier')).json().message, 'organization acme has no stored tier')
      t.same((await call(app, 'PUT', '/organizations/acme/tier', { tier: 'enterprise' })).json(), { organizationId: 'acme', tier: 'enterprise' })
      t.same((await call(app, 'GET', '/organizations/acme/tier')).json(), { organizationId: 'acme', tier: 'enterprise' })
      t.equal(await app.policies.getOrganizationTier('acme'), 'enterprise')
      t.match((await call(app, 'GET', '/organizations/acme')).json(), { tier: 'enterprise', tierSource: 'organization', limits: { requestsPerMinute: 500 } })
      t.match((await call(app, 'GET', '/organizations/acme?tier=starter')).json(), { tier: 'starter', tierSource: 'request', limits: { requestsPerMinute: 10 } })
      t.equal((await call(app, 'DELETE', '/organizations/acme/tier')).statusCode, 204)
      t.equal((await call(app, 'DELETE', '/organizations/acme/tier')).statusCode, 404)
      t.equal(await app.policies.getOrganizationTier('acme'), null)
    })

    t.test('bad input answers 400 with the policy message and changes nothing', async t => {
      const app = await adminApp(t, kind)
      await app.policies.setOrganizationOverride('acme', { requestsPerMinute: 5 })
      const p = app.policies
      const before = JSON.stringify([await p.resolveOrganization('acme'), await p.getOrganizationTier('acme')])
      const cases: Array<[string, string, unknown, RegExp, (() => Promise<unknown>)?]> = [
        ['PUT', '/organizations/acme/override', { requestsPerMinute: -1 }, /override\.requestsPerMinute must be >= 0/, async () => await p.setOrganizationOverride('acme', { requestsPerMinute: -1 })],
        ['PUT', '/organizations/acme/override', { requestsPerMinit: 5 }, /override\.requestsPerMinit is not a known field/, async () => await p.setOrganizationOverride('acme', { requestsPerMinit: 5 } as never)],
        ['PUT', '/organizations/acme/override', {}, /override must set at least one limit/, async () => await p.setOrganizationOverride('acme', {})],
        ['PUT', '/organizations/acme/tier', { tier: 'gold' }, /tier gold is not defined/, async () => await p.setOrganizationTier('acme', 'gold')],
        ['PUT', '/organizations/acme/tier', { tier: 'bad name' }, /tier must match pattern/, async () => await p.setOrganizationTier('acme', 'bad name')],
        ['GET', '/organizations/acme?tier=gold', undefined, /tier gold is not defined/, async () => await p.resolveOrganization('acme', 'gold')],
        ['GET', '/organizations/acme/usage?bucket=search', undefined, /bucket is not a known field/],
        ['GET', '/tenants/acme/usage?organizationId=', undefined, /organizationId must not have fewer than 1 characters/]
      ]
      for (const [method, path, body, message, direct] of cases) {
        const res = await call(app, method, path, body)
        const name = `${method} ${path} ${JSON.stringify(body)}`
        t.equal(res.statusCode, 400, name)
        t.match(res.json(), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message }, name)
        if (direct !== undefined) {
          const given = await direct().then(() => undefined, (err: Error) => err.message)
          t.equal(res.json().message, given, `${name}: the message fastify.policies gives`)
        }
      }
      t.equal(JSON.stringify([await p.resolveOrganization('acme'), await p.getOrganizationTier('acme')]), before, 'nothing changed')
    })
  })
}

t.test('usage: of an organization, of a tenant in one, of a shared budget; resets', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const app = await adminApp(t, 'redis', prefix)
  await app.policies.setOrganizationTier('acme', 'professional')
  await count(t, redis, prefix, 'organization', 'acme', 3)
  await count(t, redis, prefix, 'tenant', 'globex', 2, 'acme')
  await count(t, redis, prefix, 'route', 'search', 4)

  let res = await call(app, 'GET', '/organizations/acme/usage')
  t.equal(res.statusCode, 200)
  const direct = JSON.parse(JSON.stringify(await app.policies.usage('acme', { scope: 'organization' })))
  t.same({ ...res.json(), now: 0 }, { ...direct, now: 0 }, 'what fastify.policies answers (but for the time read)')
  t.match(res.json(), { scope: 'organization', id: 'acme', tier: 'professional', bucket: null, minute: { limit: 50, used: 3 }, concurrent: { inFlight: 3 } })
  t.match((await call(app, 'GET', '/organizations/acme/usage?tier=enterprise')).json(), { tier: 'enterprise', minute: { limit: 500, used: 3 } })

  t.match((await call(app, 'GET', '/tenants/globex/usage')).json(), { scope: 'tenant', organizationId: null, minute: { used: 0 } }, 'never seen in an organization')
  res = await call(app, 'GET', '/tenants/globex/usage?organizationId=acme')
  t.match(res.json(), { scope: 'tenant', id: 'globex', tenantId: 'globex', organizationId: 'acme', tier: 'starter', minute: { limit: 10, used: 2 } })

  t.match((await call(app, 'GET', '/shared/search/usage')).json(), { scope: 'route', id: 'search', tier: null, minute: { limit: null, used: 4 } })
  app.policies.registerSharedBudget('search', LIMITED)
  t.match((await call(app, 'GET', '/shared/search/usage')).json(), { minute: { limit: 100, used: 4, remaining: 96 } })

  t.equal((await call(app, 'DELETE', '/organizations/acme/usage')).statusCode, 204)
  t.match((await call(app, 'GET', '/organizations/acme/usage')).json(), { minute: { used: 0 } })
  t.match((await call(app, 'GET', '/tenants/globex/usage?organizationId=acme')).json(), { minute: { used: 2 } }, 'its tenants keep their counters')
})
