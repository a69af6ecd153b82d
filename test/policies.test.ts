// fastify.policies on both stores: every method, precedence, bad input, expiry, blocks, shadow mode.
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { PolicyManager } from '../dist/index.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'
import { STORE_KINDS } from './helpers/stores.js'

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    const build = async (options = {}): Promise<Awaited<ReturnType<typeof buildApp>>> =>
      await buildApp(t, { kind, options: { tenantExtractor: headerTenant, environment: 'staging', ...options } })
    const get = async (app: Awaited<ReturnType<typeof buildApp>>, tenant: string, tier?: string): Promise<Awaited<ReturnType<typeof app.inject>>> =>
      await app.inject({ url: '/', headers: { 'x-tenant': tenant, ...(tier !== undefined ? { 'x-tier': tier } : {}) } })

    t.test('tenant overrides: field by field over the tier, and removable', async t => {
      const app = await build()
      await app.policies.setTenantOverride('acme', { requestsPerMinute: 42, monthlyQuota: null })
      t.same(await app.policies.getTenantOverride('acme'), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
      const res = await get(app, 'acme', 'starter')
      t.equal(res.headers['x-ratelimit-limit-minute'], '42')
      t.equal(res.headers['x-ratelimit-limit-hour'], '100', 'the tier keeps the fields the override leaves alone')
      t.notOk(res.headers['x-ratelimit-limit-month'], 'null lifts a limit')
      const resolved = await app.policies.resolve('acme', 'starter')
      t.same(resolved.limits, { requestsPerMinute: 42, requestsPerHour: 100, concurrentRequests: 10, monthlyQuota: null })
      t.same(resolved.sources, { requestsPerMinute: 'override', requestsPerHour: 'tier', concurrentRequests: 'tier', monthlyQuota: 'override' })
      t.equal(await app.policies.removeTenantOverride('acme'), true)
      t.equal(await app.policies.removeTenantOverride('acme'), false, 'nothing left to remove')
      t.equal(await app.policies.getTenantOverride('acme'), null)
      t.equal((await get(app, 'acme', 'starter')).headers['x-ratelimit-limit-minute'], '10')
    })

    t.test('environment multiplier: rounded down, never below 1, unlimited stays unlimited', async t => {
      const app = await build()
      t.equal(await app.policies.getEnvironmentMultiplier('staging'), 1)
      await app.policies.setEnvironmentMultiplier('staging', 0.5)
      await app.policies.setEnvironmentMultiplier('production', 3)
      t.equal(await app.policies.getEnvironmentMultiplier(), 0.5, 'defaults to the plugin environment')
      const anon = await app.inject({ url: '/' })
      t.equal(anon.headers['x-ratelimit-limit-minute'], '2', 'anonymous 5 × 0.5 → 2')
      await app.policies.setTenantOverride('tiny', { requestsPerMinute: 1 })
      t.equal((await get(app, 'tiny', 'starter')).headers['x-ratelimit-limit-minute'], '1', '1 × 0.5 stays 1')
      const resolved = await app.policies.resolve('big', 'platform_admin')
      t.same(resolved.limits, { requestsPerMinute: null, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null })
      t.equal(resolved.multiplier, 0.5)
      t.equal(await app.policies.removeEnvironmentMultiplier('staging'), true)
      t.equal((await app.inject({ url: '/', remoteAddress: '10.3.3.3' })).headers['x-ratelimit-limit-minute'], '5')
    })

    t.test('precedence: tier ← override ← multiplier', async t => {
      const app = await build()
      await app.policies.setTier('gold', { requestsPerMinute: 100, requestsPerHour: 1000, concurrentRequests: 20, monthlyQuota: 5000 })
      await app.policies.setTenantOverride('acme', { requestsPerHour: 301 })
      await app.policies.setEnvironmentMultiplier('staging', 0.1)
      const resolved = await app.policies.resolve('acme', 'gold')
      t.same(resolved.limits, { requestsPerMinute: 10, requestsPerHour: 30, concurrentRequests: 2, monthlyQuota: 500 })
      const res = await get(app, 'acme', 'gold')
      t.equal(res.headers['x-ratelimit-limit-hour'], '30')
    })

    t.test('runtime tiers: define, replace, list, remove', async t => {
      const app = await build()
      t.equal((await get(app, 'a', 'gold')).headers['x-ratelimit-limit-minute'], '10', 'unknown tier → starter')
      await app.policies.setTier('gold', { requestsPerMinute: 77, requestsPerHour: 700, concurrentRequests: 7, monthlyQuota: 7000 })
      t.equal((await get(app, 'b', 'gold')).headers['x-ratelimit-limit-minute'], '77')
      await app.policies.setTier('starter', { requestsPerMinute: 11, requestsPerHour: 110, concurrentRequests: 11, monthlyQuota: Infinity })
      t.equal((await get(app, 'c', 'starter')).headers['x-ratelimit-limit-minute'], '11', 'a configured tier can be replaced')
      const tiers = await app.policies.listTiers()
      t.same(tiers.gold, { limits: { requestsPerMinute: 77, requestsPerHour: 700, concurrentRequests: 7, monthlyQuota: 7000 }, source: 'runtime' })
      t.same(tiers.starter.limits.monthlyQuota, null)
      t.equal(tiers.enterprise.source, 'configured')
      t.equal(await app.policies.removeTier('starter'), true)
      t.equal((await get(app, 'd', 'starter')).headers['x-ratelimit-limit-minute'], '10', 'the configured starter applies again')
    })

    t.test('tenant tiers: for extractors that know the tenant but not its tier', async t => {
      const app = await build()
      await app.policies.setTenantTier('acme', 'enterprise')
      t.equal(await app.policies.getTenantTier('acme'), 'enterprise')
      t.equal((await get(app, 'acme')).headers['x-ratelimit-limit-minute'], '500')
      t.equal((await get(app, 'acme', 'professional')).headers['x-ratelimit-limit-minute'], '50', 'a tier the extractor reports wins')
      t.match(await app.policies.resolve('acme'), { tier: 'professional', tierSource: 'seen' }, 'reported as its latest request was held')
      await get(app, 'acme')
      t.match(await app.policies.resolve('acme'), { tier: 'enterprise', tierSource: 'tenant' })
      await t.rejects(app.policies.setTenantTier('acme', 'gold'), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message: /tier gold is not defined/ })
      t.equal(await app.policies.removeTenantTier('acme'), true)
      t.equal((await get(app, 'acme')).headers['x-ratelimit-limit-minute'], '10')
    })

    t.test('block and unblock: 403 with the reason', async t => {
      const app = await build()
      await app.policies.block('abuser', { reason: 'scraping, see ticket 123' })
      const res = await get(app, 'abuser', 'enterprise')
      t.equal(res.statusCode, 403)
      t.same(res.json(), { statusCode: 403, error: 'Forbidden', code: 'FST_MAESTRO_RL_BLOCKED', reason: 'blocked', message: 'scraping, see ticket 123' })
      t.same((await app.policies.resolve('abuser')).blocked, { reason: 'scraping, see ticket 123', expiresAt: null })
      t.equal((await get(app, 'other')).statusCode, 200)
      t.equal(await app.policies.unblock('abuser'), true)
      t.equal((await get(app, 'abuser')).statusCode, 200)
    })

    t.test('overrides and blocks with an expiry disappear by themselves', async t => {
      const app = await build()
      await app.policies.setTenantOverride('acme', { requestsPerMinute: 3, expiresInSeconds: 0.3 })
      await app.policies.block('bad', { seconds: 0.3 })
      t.equal((await get(app, 'acme')).headers['x-ratelimit-limit-minute'], '3')
      t.equal((await get(app, 'bad')).statusCode, 403)
      const override = await app.policies.getTenantOverride('acme')
      t.ok(override !== null && override.expiresAt !== null && override.expiresAt > Date.now(), 'carries its expiry')
      await sleep(400)
      t.equal((await get(app, 'acme')).headers['x-ratelimit-limit-minute'], '10')
      t.equal((await get(app, 'bad')).statusCode, 200)
      t.equal(await app.policies.getTenantOverride('acme'), null)
      await app.policies.reload()
      t.equal(await app.policies.removeTenantOverride('acme'), false, 'the reload pruned it from the store')
    })

    t.test('shadow mode counts and reports, never enforces', async t => {
      const app = await build()
      await app.policies.setShadowMode({ scope: 'tenant', tenantId: 'trial' }, true)
      const codes = []
      let last
      for (let i = 0; i < 12; i++) { last = await get(app, 'trial', 'starter'); codes.push(last.statusCode) }
      t.same(new Set(codes), new Set([200]), 'all admitted')
      t.equal(last?.headers['x-ratelimit-shadow'], 'rate_limit_exceeded', 'but marked as what enforcement would do')
      t.equal(last?.headers['x-ratelimit-remaining-minute'], '0', 'and still counted')
      for (let i = 0; i < 10; i++) await get(app, 'paying', 'starter')
      t.equal((await get(app, 'paying', 'starter')).statusCode, 429, 'other tenants are enforced')
      await app.policies.setShadowMode({ scope: 'tier', tier: 'starter' }, true)
      t.equal((await get(app, 'paying', 'starter')).statusCode, 200, 'per tier')
      await app.policies.setShadowMode({ scope: 'tier', tier: 'starter' }, false)
      await app.policies.setShadowMode({ scope: 'global' }, true)
      t.equal((await get(app, 'paying', 'starter')).statusCode, 200, 'globally')
      t.same(await app.policies.shadowModes(), { global: true, tiers: [], tenants: ['trial'] })
      await app.policies.setShadowMode({ scope: 'global' }, false)
      t.equal((await get(app, 'paying', 'starter')).statusCode, 429)
    })

    t.test('usage and resetUsage', async t => {
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant } }, app => {
        app.get('/', async () => 'ok')
        app.get('/search', { config: { rateLimit: { bucket: 'search', cost: 2 } } }, async () => 'ok')
      })
      for (let i = 0; i < 3; i++) await get(app, 'acme', 'starter')
      await app.inject({ url: '/search', headers: { 'x-tenant': 'acme', 'x-tier': 'starter' } })
      await sleep(20) // leases are given back just after the response
      const usage = await app.policies.usage('acme')
      t.match(usage, {
        tenantId: 'acme',
        tier: 'starter',
        bucket: null,
        minute: { limit: 10, used: 3, remaining: 7 },
        hour: { limit: 100, used: 3, remaining: 97 },
        month: { limit: 10000, used: 5, remaining: 9995 }, // the month counts every bucket: 3 + the search's cost of 2
        concurrent: { limit: 10, inFlight: 0 }
      })
      t.ok(usage.month.resetAt > Date.now())
      t.match(await app.policies.usage('acme', { bucket: 'search' }), { bucket: 'search', minute: { used: 2 }, month: { used: 5 } })
      await app.policies.resetUsage('acme')
      t.match(await app.policies.usage('acme'), { minute: { used: 0 }, month: { used: 0 } })
      t.match(await app.policies.usage('acme', { bucket: 'search' }), { minute: { used: 0 } }, 'every bucket')
    })

    t.test('bad input is refused, naming the field, and changes nothing', async t => {
      const app = await build()
      await app.policies.setTenantOverride('acme', { requestsPerMinute: 5 })
      const before = JSON.stringify([await app.policies.resolve('acme'), await app.policies.listTiers(), await app.policies.shadowModes()])
      const cases: Array<[() => Promise<unknown>, RegExp]> = [
        [async () => await app.policies.setTenantOverride('acme', { requestsPerMinute: -1 }), /override\.requestsPerMinute must be >= 0/],
        [async () => await app.policies.setTenantOverride('acme', { requestsPerMinute: 1.5 }), /override\.requestsPerMinute/],
        [async () => await app.policies.setTenantOverride('acme', { requestsPerMinit: 5 } as never), /override\.requestsPerMinit is not a known field/],
        [async () => await app.policies.setTenantOverride('acme', {}), /at least one limit/],
        [async () => await app.policies.setTenantOverride('acme', { requestsPerMinute: 5, expiresInSeconds: -3 }), /override\.expiresInSeconds/],
        [async () => await app.policies.setTenantOverride(42 as never, { requestsPerMinute: 5 }), /tenantId must be string/],
        [async () => await app.policies.setEnvironmentMultiplier('staging', 0), /multiplier must be > 0/],
        [async () => await app.policies.setEnvironmentMultiplier('staging', Number.NaN), /multiplier/],
        [async () => await app.policies.setEnvironmentMultiplier('', 2), /environment/],
        [async () => await app.policies.setTier('bad name', { requestsPerMinute: 1, requestsPerHour: 1, concurrentRequests: 1, monthlyQuota: 1 }), /name must match pattern/],
        [async () => await app.policies.setTier('gold', { requestsPerMinute: 1 } as never), /limits\.requestsPerHour is required/],
        [async () => await app.policies.block('x', { seconds: 0 }), /block\.seconds/],
        [async () => await app.policies.block('x', { reason: 7 } as never), /block\.reason must be string/],
        [async () => await app.policies.setShadowMode({ scope: 'planet' } as never, true), /scope/],
        [async () => await app.policies.setShadowMode({ scope: 'tenant' } as never, true), /scope\.tenantId is required/],
        [async () => await app.policies.setShadowMode({ scope: 'tier' } as never, true), /scope\.tier is required/],
        [async () => await app.policies.setShadowMode({ scope: 'global' }, 'yes' as never), /enabled must be a boolean/],
        [async () => await app.policies.usage('acme', { bucket: '' }), /options\.bucket/]
      ]
      for (const [attempt, message] of cases) await t.rejects(attempt(), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message })
      const after = JSON.stringify([await app.policies.resolve('acme'), await app.policies.listTiers(), await app.policies.shadowModes()])
      t.equal(after, before, 'nothing changed')
    })
  })
}

t.test('stored policies reject nothing valid and survive in Redis for new instances', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  const writer = new PolicyManager(redis, { keyPrefix })
  await writer.start()
  t.teardown(() => writer.close())
  await writer.setTenantOverride('acme', { requestsPerMinute: 9 })
  await writer.setEnvironmentMultiplier('production', 2)
  const reader = new PolicyManager(sharedRedis(t), { keyPrefix, environment: 'production' })
  await reader.start()
  t.teardown(() => reader.close())
  t.match(await reader.resolve('acme', 'starter'), { limits: { requestsPerMinute: 18, requestsPerHour: 200 }, multiplier: 2 })
})
