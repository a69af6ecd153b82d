// usage() and resolve() report the limits a tenant is held to: the tier given, else the tier its
// extractor reported on its latest request, else its stored tier, else the default tier.
import t from 'tap'
import rateLimitAdmin from '../dist/admin.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { cliFor } from './helpers/cli.js'
import { sharedRedis } from './helpers/redis.js'
import { STORE_KINDS } from './helpers/stores.js'
import { within } from './helpers/wait.js'

const TOKEN = { 'x-admin-token': 'secret' }
const authorize = async (request: { headers: Record<string, unknown> }): Promise<void> => {
  if (request.headers['x-admin-token'] !== 'secret') throw Object.assign(new Error('admin token required'), { statusCode: 401 })
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    const build = async (): Promise<Awaited<ReturnType<typeof buildApp>>> =>
      await buildApp(t, { kind, options: { tenantExtractor: headerTenant } }, app => {
        app.get('/', async () => 'ok')
        app.register(rateLimitAdmin, { prefix: '/admin', authorize })
      })

    t.test('after one request, usage() without a tier reports the tier the extractor gave', async t => {
      const app = await build()
      t.match(await app.policies.usage('globex'), { tier: 'starter', minute: { limit: 10 } }, 'never seen: the default tier')
      await app.inject({ url: '/', headers: { 'x-tenant': 'globex', 'x-tier': 'professional' } })
      t.match(await app.policies.usage('globex'), { tier: 'professional', minute: { limit: 50, used: 1 }, month: { limit: 100_000 } })
      t.match(await app.policies.resolve('globex'), { tier: 'professional', tierSource: 'seen' })

      // The latest request counts: the extractor now reports nothing, so the stored tier applies.
      await app.policies.setTenantTier('globex', 'enterprise')
      t.match(await app.policies.resolve('globex'), { tier: 'professional', tierSource: 'seen' }, 'held to professional while the extractor says so')
      await app.inject({ url: '/', headers: { 'x-tenant': 'globex' } })
      t.match(await app.policies.resolve('globex'), { tier: 'enterprise', tierSource: 'tenant' })
      t.match(await app.policies.usage('globex'), { tier: 'enterprise', minute: { limit: 500, used: 2 } })

      // An unknown tier from the extractor holds the request to the default tier: usage says the same.
      await app.inject({ url: '/', headers: { 'x-tenant': 'globex', 'x-tier': 'no-such-tier' } })
      t.match(await app.policies.resolve('globex'), { tier: 'starter', tierSource: 'seen' })
    })

    t.test('an explicit tier: accepted by usage(), resolve() and the admin routes, refused when undefined', async t => {
      const app = await build()
      await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })
      t.match(await app.policies.usage('acme', { tier: 'enterprise' }), { tier: 'enterprise', minute: { limit: 500, used: 1 } })
      await t.rejects(app.policies.usage('acme', { tier: 'gold' }), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message: /tier gold is not defined/ })
      await t.rejects(app.policies.resolve('acme', 'gold'), { message: /tier gold is not defined/ })

      let res = await app.inject({ url: '/admin/tenants/acme/usage?tier=professional&bucket=search', headers: TOKEN })
      t.equal(res.statusCode, 200)
      t.match(res.json(), { tier: 'professional', bucket: 'search', minute: { limit: 50, used: 0 } })
      res = await app.inject({ url: '/admin/tenants/acme/usage?tier=professional', headers: TOKEN })
      t.match(res.json(), { tier: 'professional', minute: { limit: 50, used: 1 } })
      for (const path of ['/admin/tenants/acme/usage?tier=gold', '/admin/tenants/acme?tier=gold']) {
        res = await app.inject({ url: path, headers: TOKEN })
        t.equal(res.statusCode, 400, path)
        t.match(res.json(), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message: 'Invalid rate-limit policy: tier gold is not defined' }, path)
      }
      res = await app.inject({ url: '/admin/tenants/acme/usage?tier=bad%20name', headers: TOKEN })
      t.equal(res.statusCode, 400)
      t.match(res.json().message, /tier must match pattern/)

      await app.policies.setTier('gold', { requestsPerMinute: 70, requestsPerHour: 700, concurrentRequests: null, monthlyQuota: 7000 })
      res = await app.inject({ url: '/admin/tenants/acme/usage?tier=gold', headers: TOKEN })
      t.match(res.json(), { tier: 'gold', minute: { limit: 70, used: 1 } }, 'a runtime tier is defined')
    })

    t.test('a tenant id of any shape is remembered under its own name', async t => {
      const app = await build()
      // Braces, the encoded form of another id, globs, an empty id: each its own tenant.
      const hostile = ['{t:acme}', '}{', '~' + 'A'.repeat(32), '*', '']
      const tierOf = (i: number): string => i % 2 === 0 ? 'professional' : 'enterprise'
      for (const [i, tenant] of hostile.entries()) {
        await app.inject({ url: '/', headers: { 'x-tenant': tenant, 'x-tier': tierOf(i) } })
      }
      for (const [i, tenant] of hostile.entries()) {
        t.equal((await app.policies.usage(tenant)).tier, tierOf(i), JSON.stringify(tenant))
      }
      t.equal((await app.policies.usage('acme')).tier, 'starter', 'no collision with a plain id')
    })
  })
}

t.test('another instance, and maestro-rl usage, read the tier seen through Redis', async t => {
  const { ok, cli, prefix } = cliFor(t)
  const app = await buildApp(t, { kind: 'redis', keyPrefix: prefix, options: { tenantExtractor: headerTenant } })
  const other = await buildApp(t, { kind: 'redis', keyPrefix: prefix, options: { tenantExtractor: headerTenant } })
  for (let i = 0; i < 2; i++) await app.inject({ url: '/', headers: { 'x-tenant': 'globex', 'x-tier': 'professional' } })
  const redis = sharedRedis(t)
  const writtenMs = await within(3000, async () => await redis.hget(`${prefix}:v1:{seen-tiers}`, 'globex') === 'professional')
  t.ok(writtenMs < 3000, `the change is written within the flush period (${writtenMs} ms)`)
  t.match(await other.policies.usage('globex'), { tier: 'professional', minute: { limit: 50, used: 2 } })
  t.match(await ok('usage', 'globex'), { tier: 'professional', minute: { limit: 50, used: 2 } })
  t.match(await ok('show', 'globex'), { tier: 'professional', tierSource: 'seen' })
  t.match(await ok('usage', 'globex', '--tier', 'enterprise', '--bucket', 'search'), { tier: 'enterprise', bucket: 'search', minute: { limit: 500, used: 0 } })
  t.match(await ok('usage', 'globex', '--tier', 'starter'), { tier: 'starter', minute: { limit: 10, used: 2, remaining: 8 } })
  const refused = await cli('usage', 'globex', '--tier', 'gold')
  t.equal(refused.code, 2)
  t.match(refused.stderr, /tier gold is not defined/)

  // Only a change is written: the same tier again costs Redis nothing.
  await redis.hset(`${prefix}:v1:{seen-tiers}`, 'globex', 'marker')
  for (let i = 0; i < 5; i++) await app.inject({ url: '/', headers: { 'x-tenant': 'globex', 'x-tier': 'professional' } })
  await app.close() // flushes what is pending
  t.equal(await redis.hget(`${prefix}:v1:{seen-tiers}`, 'globex'), 'marker', 'an unchanged tier is not written again')
})
