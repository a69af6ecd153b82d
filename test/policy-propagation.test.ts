// Policies changed on one instance are applied by every other within a second, with no Redis call
// on the request path; notices out of order make an instance read the store again.
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

t.test('versions: notices are followed in order; a snapshot is the truth but for what arrived while it was read', async t => {
  const state = new PolicyState()
  const entry = (v: number, value?: unknown): { v: number, expiresAt: null, value: unknown } => ({ v, expiresAt: null, value })
  state.replaceWith(new Map(), 4, state.mark()) // the store, empty at version 4
  t.equal(state.receive('override:acme', entry(5, { requestsPerMinute: 50 })), true, 'the next version applies')
  t.equal(state.receive('override:acme', entry(5, { requestsPerMinute: 50 })), true, 'a repeat changes nothing')
  t.equal(state.receive('override:acme', entry(3, { requestsPerMinute: 30 })), false, 'an older notice asks for a snapshot')
  t.equal(state.receive('block:x', entry(9, {})), false, 'so does a gap')
  t.equal(state.receive('block:y', entry(5, {})), false, 'and a notice that conflicts with one followed at its version')
  t.same([state.overrides.get('acme')?.patch, state.blocks.size], [{ requestsPerMinute: 50 }, 0], 'none of them applied')
  t.equal(state.receive('override:acme', entry(6)), true, 'removal at v6')
  t.equal(state.apply('override:acme', entry(5, { requestsPerMinute: 50 })), false, 'an own write below the held version asks for a snapshot')
  t.equal(state.overrides.has('acme'), false, 'and does not bring back the removed override')

  // A snapshot requested now reads the store at version 6; a notice of version 7 arrives first.
  const mark = state.mark()
  t.equal(state.receive('block:bad', entry(7, { reason: 'x' })), true)
  state.replaceWith(new Map([['tier:gold', entry(2, { requestsPerMinute: 1, requestsPerHour: 1, concurrentRequests: 1, monthlyQuota: 1 })]]), 6, mark)
  t.equal(state.blocks.has('bad'), true, 'the change that arrived meanwhile is kept')
  t.equal(state.runtimeTiers.has('gold'), true, 'the snapshot applies')
  t.equal(state.receive('block:other', entry(8, {})), true, 'and notices are followed on from the newer of the two')

  // The store lost its data: a later snapshot is the truth, whatever the versions held.
  const generation = state.generation
  state.replaceWith(new Map([['block:acme', entry(1, {})]]), 1, state.mark())
  t.same([...state.blocks.keys()], ['acme'], 'what the store no longer has is dropped, whatever its version')
  t.equal(state.runtimeTiers.size, 0)
  t.ok(state.generation > generation, 'caches see the change')
  t.equal(state.receive('block:beta', entry(2, {})), true, 'versions go on from the store\'s')
  const unchanged = state.generation
  state.replaceWith(new Map([['block:acme', entry(1, {})], ['block:beta', entry(2, {})]]), 2, state.mark())
  t.equal(state.generation, unchanged, 'a snapshot that changes nothing leaves caches alone')
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
