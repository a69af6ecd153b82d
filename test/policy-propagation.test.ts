// Policies changed on one instance are applied by every other within a second, with no Redis call
// on the request path; old notices never overwrite newer state.
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { PolicyState } from '../dist/policies/policy-state.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { commandCalls, privateRedis, sharedRedis, uniquePrefix } from './helpers/redis.js'
import { within } from './helpers/wait.js'

t.test('a change made on one instance is live on another within a second', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  // Each app gets its own Redis connection (buildApp creates one per app).
  const a = await buildApp(t, { kind: 'redis', keyPrefix, options: { tenantExtractor: headerTenant, policyReloadSeconds: 3600 } })
  const b = await buildApp(t, { kind: 'redis', keyPrefix, options: { tenantExtractor: headerTenant, policyReloadSeconds: 3600 } })
  const limitOnB = async (): Promise<string | undefined> =>
    (await b.inject({ url: '/', headers: { 'x-tenant': 'acme', 'x-tier': 'starter' } })).headers['x-ratelimit-limit-minute'] as string | undefined

  t.equal(await limitOnB(), '10')
  await a.policies.setTenantOverride('acme', { requestsPerMinute: 250 })
  const overrideMs = await within(1000, async () => await limitOnB() === '250')
  t.ok(overrideMs < 1000, `override live on the other instance after ${overrideMs} ms`)

  await a.policies.block('acme', { reason: 'paused' })
  const blockMs = await within(1000, async () => (await b.inject({ url: '/', headers: { 'x-tenant': 'acme' } })).statusCode === 403)
  t.ok(blockMs < 1000, `block live after ${blockMs} ms`)
  await a.policies.unblock('acme')
  t.ok(await within(1000, async () => (await b.inject({ url: '/', headers: { 'x-tenant': 'acme' } })).statusCode === 200) < 1000, 'unblock too')

  await a.policies.setEnvironmentMultiplier(b.policies.environment, 0.5)
  t.ok(await within(1000, async () => await limitOnB() === '125') < 1000, 'multiplier too')
  await a.policies.setTier('gold', { requestsPerMinute: 7, requestsPerHour: 70, concurrentRequests: 7, monthlyQuota: 700 })
  t.ok(await within(1000, async () => (await b.policies.listTiers()).gold !== undefined) < 1000, 'runtime tiers too')
})

t.test('a missed notice is caught up by the periodic reload', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  const b = await buildApp(t, { kind: 'redis', keyPrefix, options: { tenantExtractor: headerTenant, policyReloadSeconds: 1 } })
  // Written straight into the hash, with no notice: only the reload can see it.
  await redis.hset(`${keyPrefix}:v1:{policies}`, 'override:acme', JSON.stringify({ v: 999, expiresAt: null, value: { requestsPerMinute: 33 } }), '__version', 999)
  const ms = await within(2500, async () => (await b.policies.getTenantOverride('acme'))?.requestsPerMinute === 33)
  t.ok(ms < 2500, `reloaded after ${ms} ms`)
})

t.test('versions: an old notice or snapshot never overwrites a newer state', async t => {
  const state = new PolicyState()
  t.equal(state.apply('override:acme', { v: 5, expiresAt: null, value: { requestsPerMinute: 50 } }), true)
  t.equal(state.apply('override:acme', { v: 3, expiresAt: null, value: { requestsPerMinute: 30 } }), false, 'older notice ignored')
  t.same(state.overrides.get('acme')?.patch, { requestsPerMinute: 50 })
  t.equal(state.apply('override:acme', { v: 6, expiresAt: null, value: undefined }), true, 'removal at v6')
  t.equal(state.apply('override:acme', { v: 5, expiresAt: null, value: { requestsPerMinute: 50 } }), false, 'a late v5 does not resurrect it')
  t.equal(state.overrides.has('acme'), false)
  // A snapshot taken at v4 arrives after notices up to v7.
  state.apply('block:bad', { v: 7, expiresAt: null, value: { reason: 'x' } })
  state.replaceWith(new Map([['override:acme', { v: 4, expiresAt: null, value: { requestsPerMinute: 40 } }]]), 4)
  t.equal(state.overrides.has('acme'), false, 'the older snapshot did not bring back the removed override')
  t.equal(state.blocks.has('bad'), true, 'nor drop the newer block')
  // A newer snapshot that no longer has the block removes it.
  state.replaceWith(new Map(), 8)
  t.equal(state.blocks.has('bad'), false)
})

t.test('the request path still costs one script call with policies in force', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const app = await buildApp(t, { kind: 'memory', options: { redis, tenantExtractor: headerTenant } })
  await app.policies.setTenantOverride('acme', { requestsPerMinute: 100 })
  await app.policies.setEnvironmentMultiplier(app.policies.environment, 2)
  await app.policies.setTenantTier('acme', 'professional')
  await app.policies.setShadowMode({ scope: 'tier', tier: 'enterprise' }, true)
  await app.inject({ url: '/', headers: { 'x-tenant': 'warm' } })
  await sleep(20) // its lease release goes out just after the response
  await redis.config('RESETSTAT')
  for (let i = 0; i < 10; i++) t.equal((await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })).headers['x-ratelimit-limit-minute'], '200')
  await sleep(50)
  const calls = await commandCalls(redis)
  t.equal(calls.hmget, 10, 'ten admissions, all in scripts')
  t.ok(calls.evalsha >= 10 && calls.evalsha <= 20, `one script call per request sent alone; a release rides along or goes in a call of its own (${calls.evalsha})`)
  t.ok(calls.hdel >= 10, 'one release per request')
  t.notOk(calls.hgetall !== undefined && calls.hgetall > 10, 'no policy reads beyond the script\'s own')
  t.notOk(calls.get, 'no GET')
  t.notOk(calls.hget, 'no HGET')
})
