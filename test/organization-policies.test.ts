// Organizations in fastify.policies: overrides and tiers by organization id (stored, propagated,
// expired, checked), forOrganization's resolution, and usage and resets of organizations, of tenants
// in an organization and of shared route budgets, against real Redis.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { PolicyManager, RedisStore, type TierLimits } from '../dist/index.js'
import { storeKeys, type SubjectKind } from '../dist/keys.js'
import { sharedLimiter } from '../dist/route-config.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'
import { within } from './helpers/wait.js'

const GOLD = { requestsPerMinute: 70, requestsPerHour: 700, concurrentRequests: 7, monthlyQuota: 7000 }
const LIMITED: TierLimits = { requestsPerMinute: 100, requestsPerHour: 1000, concurrentRequests: 10, monthlyQuota: 10_000 }

interface Setup { redis: Redis, prefix: string, policies: PolicyManager, warnings: unknown[] }

/** A started PolicyManager on its own prefix (closed when the test ends); warnings it logs are kept. */
async function setup (t: Test, options: { environment?: string } = {}): Promise<Setup> {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const warnings: unknown[] = []
  const policies = await manager(t, redis, prefix, { ...options, log: { warn: (...args: unknown[]) => warnings.push(args), error () {} } })
  return { redis, prefix, policies, warnings }
}

async function manager (t: Test, redis: Redis, keyPrefix: string, options: ConstructorParameters<typeof PolicyManager>[1] = {}): Promise<PolicyManager> {
  const policies = new PolicyManager(redis, { keyPrefix, environment: 'staging', ...options })
  await policies.start()
  t.teardown(() => policies.close())
  return policies
}

/** Counts `n` admissions in a subject's counters, with the existing store (no request path needed). */
async function count (t: Test, redis: Redis, prefix: string, kind: SubjectKind, id: string, n: number, organizationId?: string, bucket?: string): Promise<void> {
  const store = new RedisStore({ client: redis })
  t.teardown(() => store.close())
  const keys = storeKeys(prefix, kind, id, bucket, organizationId)
  for (let i = 0; i < n; i++) {
    const decision = await store.admit({ keys, cost: 1, limits: LIMITED, leaseId: `${kind}-${id}-${i}` })
    t.equal(decision.allowed, true, `admission ${i + 1} of ${kind} ${id}`)
  }
}

t.test('overrides by organization id: set, read, removed, field by field over the tier', async t => {
  const { policies } = await setup(t)
  t.equal(await policies.getOrganizationOverride('acme'), null)
  await policies.setOrganizationOverride('acme', { requestsPerMinute: 42, monthlyQuota: null })
  t.same(await policies.getOrganizationOverride('acme'), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
  t.equal(await policies.getTenantOverride('acme'), null, 'a tenant of the same id has no override')
  await policies.setOrganizationTier('acme', 'professional')
  const resolved = await policies.resolveOrganization('acme')
  t.same(resolved, {
    organizationId: 'acme',
    tier: 'professional',
    tierSource: 'organization',
    environment: 'staging',
    multiplier: 1,
    limits: { requestsPerMinute: 42, requestsPerHour: 1000, concurrentRequests: 50, monthlyQuota: null },
    sources: { requestsPerMinute: 'override', requestsPerHour: 'tier', concurrentRequests: 'tier', monthlyQuota: 'override' },
    override: { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null }
  })
  t.equal(await policies.removeOrganizationOverride('acme'), true)
  t.equal(await policies.removeOrganizationOverride('acme'), false, 'nothing left to remove')
  t.equal(await policies.getOrganizationOverride('acme'), null)
  t.same((await policies.resolveOrganization('acme')).limits, { requestsPerMinute: 50, requestsPerHour: 1000, concurrentRequests: 50, monthlyQuota: 100_000 })
})

t.test('organization tiers: set, read, removed; only defined tiers', async t => {
  const { policies } = await setup(t)
  t.equal(await policies.getOrganizationTier('acme'), null)
  t.match(await policies.resolveOrganization('acme'), { tier: null, tierSource: 'none', limits: { requestsPerMinute: null, monthlyQuota: null } })
  await t.rejects(policies.setOrganizationTier('acme', 'gold'), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message: /tier gold is not defined/ })
  await policies.setTier('gold', GOLD)
  await policies.setOrganizationTier('acme', 'gold')
  t.equal(await policies.getOrganizationTier('acme'), 'gold')
  t.equal(await policies.getTenantTier('acme'), null, 'a tenant of the same id has no stored tier')
  t.match(await policies.resolveOrganization('acme'), { tier: 'gold', tierSource: 'organization', limits: GOLD })
  t.match(await policies.resolveOrganization('acme', 'enterprise'), { tier: 'enterprise', tierSource: 'request', limits: { requestsPerMinute: 500 } })
  await t.rejects(policies.resolveOrganization('acme', 'silver'), { message: /tier silver is not defined/ })
  t.equal(await policies.removeOrganizationTier('acme'), true)
  t.equal(await policies.removeOrganizationTier('acme'), false)
  t.equal(await policies.getOrganizationTier('acme'), null)
})

t.test('changes reach a second PolicyManager on the same Redis', async t => {
  const { redis, prefix, policies } = await setup(t)
  const other = await manager(t, redis, prefix)
  await policies.setOrganizationOverride('acme', { requestsPerHour: 500 })
  await policies.setOrganizationTier('acme', 'enterprise')
  t.ok(await within(1000, async () => (await other.getOrganizationOverride('acme'))?.requestsPerHour === 500) < 1000, 'the override')
  t.ok(await within(1000, async () => await other.getOrganizationTier('acme') === 'enterprise') < 1000, 'the tier')
  t.equal(other.forOrganization('acme', undefined)?.limits.requestsPerHour, 500, 'the request path of the other instance applies them')
  await policies.removeOrganizationOverride('acme')
  t.ok(await within(1000, async () => other.forOrganization('acme', undefined)?.limits.requestsPerHour === 10_000) < 1000, 'and their removal')

  const late = await manager(t, redis, prefix)
  t.match(await late.resolveOrganization('acme'), { tier: 'enterprise', override: null }, 'an instance started later loads them')
})

t.test('an override with an expiry disappears by itself, on the request path too', async t => {
  const { policies } = await setup(t)
  await policies.setOrganizationOverride('acme', { requestsPerMinute: 3, expiresInSeconds: 0.3 })
  const override = await policies.getOrganizationOverride('acme')
  t.ok(override !== null && override.expiresAt !== null && override.expiresAt > Date.now(), 'carries its expiry')
  t.equal(policies.forOrganization('acme', undefined)?.limits.requestsPerMinute, 3)
  await sleep(350)
  t.equal(policies.forOrganization('acme', undefined), undefined, 'no tier and no override: unlimited, though nothing changed since')
  t.equal(await policies.getOrganizationOverride('acme'), null)
  await policies.reload()
  t.equal(await policies.removeOrganizationOverride('acme'), false, 'the reload pruned it from the store')
})

t.test('invalid input is refused, naming the field, and leaves what is stored alone', async t => {
  const { redis, prefix, policies } = await setup(t)
  await policies.setOrganizationOverride('acme', { requestsPerMinute: 42 })
  await policies.setOrganizationTier('acme', 'professional')
  const stored = async (): Promise<Record<string, string>> => await redis.hgetall(`${prefix}:v1:{policies}`)
  const before = await stored()
  const generation = policies.generation
  const refusals: Array<[() => Promise<unknown>, RegExp]> = [
    [async () => await policies.setOrganizationOverride('acme', { requestsPerMinute: -1 }), /override\.requestsPerMinute must be >= 0/],
    [async () => await policies.setOrganizationOverride('acme', { requestsPerMinute: 1.5 }), /override\.requestsPerMinute/],
    [async () => await policies.setOrganizationOverride('acme', { perMinute: 5 } as never), /override.*perMinute/],
    [async () => await policies.setOrganizationOverride('acme', {}), /override must set at least one limit/],
    [async () => await policies.setOrganizationOverride('acme', { requestsPerMinute: 1, expiresInSeconds: 0 }), /override\.expiresInSeconds/],
    [async () => await policies.setOrganizationOverride('x'.repeat(1025), { requestsPerMinute: 1 }), /organizationId/],
    [async () => await policies.setOrganizationOverride('', { requestsPerMinute: 1 }), /organizationId/],
    [async () => await policies.setOrganizationTier('acme', 'bad name'), /tier must match pattern/],
    [async () => await policies.setOrganizationTier('acme', 'gold'), /tier gold is not defined/],
    [async () => await policies.removeOrganizationTier(42 as never), /organizationId/],
    [async () => await policies.usage('acme', { scope: 'organization', bucket: 'search' }), /options\.bucket applies to a tenant only/],
    [async () => await policies.usage('acme', { scope: 'organization', organizationId: 'x' }), /options\.organizationId applies to a tenant only/],
    [async () => await policies.usage('search', { scope: 'route', tier: 'starter' }), /options\.tier does not apply to a shared route budget/],
    [async () => await policies.usage('acme', { scope: 'team' as never }), /options\.scope/],
    [async () => await policies.resetUsage('acme', { scope: 'route' as never }), /options\.scope/],
    [async () => await policies.resetUsage('acme', { scope: 'organization', organizationId: 'x' }), /options\.organizationId applies to a tenant only/]
  ]
  for (const [attempt, message] of refusals) {
    await t.rejects(attempt(), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message }, String(message))
  }
  t.same(await stored(), before, 'the stored policies are as they were')
  t.equal(policies.generation, generation, 'and the view did not change')
  t.same(await policies.getOrganizationOverride('acme'), { requestsPerMinute: 42, expiresAt: null })
})

t.test('forOrganization: the extractor\'s tier, else the stored tier, else none; override; multiplier', async t => {
  const { policies, warnings } = await setup(t)
  t.equal(policies.forOrganization('acme', undefined), undefined, 'no tier, no override: no level to add')

  await policies.setOrganizationTier('acme', 'professional')
  t.same(policies.forOrganization('acme', undefined), { tier: 'professional', limits: { requestsPerMinute: 50, requestsPerHour: 1000, concurrentRequests: 50, monthlyQuota: 100_000 } })
  t.equal(policies.forOrganization('acme', 'enterprise')?.tier, 'enterprise', 'the extractor\'s tier wins over the stored one')

  t.equal(policies.forOrganization('acme', 'no-such-tier')?.tier, 'starter', 'an unknown name: the default tier')
  policies.forOrganization('acme', 'no-such-tier')
  policies.forOrganization('other', 'no-such-tier')
  t.equal(warnings.filter(w => JSON.stringify(w).includes('no-such-tier')).length, 1, 'logged once')

  await policies.setOrganizationOverride('acme', { requestsPerHour: 301, concurrentRequests: null })
  t.same(policies.forOrganization('acme', undefined)?.limits, { requestsPerMinute: 50, requestsPerHour: 301, concurrentRequests: Infinity, monthlyQuota: 100_000 }, 'field by field over the tier')
  await policies.setEnvironmentMultiplier('staging', 0.1)
  t.same(policies.forOrganization('acme', undefined)?.limits, { requestsPerMinute: 5, requestsPerHour: 30, concurrentRequests: Infinity, monthlyQuota: 10_000 }, 'then the multiplier')

  await policies.setOrganizationOverride('beta', { monthlyQuota: 1000 })
  t.same(policies.forOrganization('beta', undefined), { tier: null, limits: { requestsPerMinute: Infinity, requestsPerHour: Infinity, concurrentRequests: Infinity, monthlyQuota: 100 } }, 'an override alone, without a tier')
  await policies.setOrganizationOverride('beta', { monthlyQuota: null })
  t.equal(policies.forOrganization('beta', undefined), undefined, 'an override that limits nothing: no level')
  await policies.setOrganizationOverride('gamma', { requestsPerMinute: null, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null })
  t.equal(policies.forOrganization('gamma', 'platform_admin'), undefined, 'an unlimited tier: no level')
})

t.test('forOrganization answers from memory until a policy changes', async t => {
  const { policies } = await setup(t)
  await policies.setOrganizationTier('acme', 'starter')
  const first = policies.forOrganization('acme', undefined)
  t.equal(policies.forOrganization('acme', undefined), first, 'the same answer, not a copy')
  t.not(policies.forOrganization('acme', 'professional'), first, 'another reported tier, another answer')
  await policies.setTier('starter', GOLD)
  const changed = policies.forOrganization('acme', undefined)
  t.not(changed, first, 'a policy change is seen at once')
  t.same(changed?.limits, GOLD)
})

t.test('multiplyLimits and shared budgets', async t => {
  const { policies } = await setup(t)
  t.equal(policies.multiplyLimits(LIMITED), LIMITED, 'no multiplier: the same limits')
  await policies.setEnvironmentMultiplier('staging', 0.5)
  const halved = policies.multiplyLimits(LIMITED)
  t.same(halved, { requestsPerMinute: 50, requestsPerHour: 500, concurrentRequests: 5, monthlyQuota: 5000 })
  t.equal(policies.multiplyLimits(LIMITED), halved, 'memoised')

  t.equal(policies.sharedBudget('search'), undefined)
  policies.registerSharedBudget('search', LIMITED)
  t.equal(policies.sharedBudget('search'), LIMITED)
  t.throws(() => policies.registerSharedBudget('', LIMITED), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message: /name/ })
})

t.test('resolveOrganization reports the tier the organization\'s latest request reported', async t => {
  const { redis, prefix, policies } = await setup(t)
  await policies.setOrganizationTier('acme', 'starter')
  policies.forOrganization('acme', 'enterprise')
  t.match(await policies.resolveOrganization('acme'), { tier: 'enterprise', tierSource: 'seen', limits: { requestsPerMinute: 500 } })
  policies.forOrganization('acme', undefined)
  t.match(await policies.resolveOrganization('acme'), { tier: 'starter', tierSource: 'organization' }, 'the latest request reported none')

  policies.forOrganization('acme', 'professional')
  await policies.close() // writes what it saw
  t.equal(await redis.hget(`${prefix}:v1:{seen-org-tiers}`, 'acme'), 'professional')
  const other = await manager(t, redis, prefix)
  t.match(await other.resolveOrganization('acme'), { tier: 'professional', tierSource: 'seen' }, 'another instance reads it')
})

t.test('usage of an organization: its own counters against its limits', async t => {
  const { redis, prefix, policies } = await setup(t)
  await policies.setOrganizationTier('acme', 'professional')
  await count(t, redis, prefix, 'organization', 'acme', 3)
  await count(t, redis, prefix, 'tenant', 'globex', 2, 'acme')
  const usage = await policies.usage('acme', { scope: 'organization' })
  t.match(usage, {
    scope: 'organization',
    id: 'acme',
    tenantId: 'acme',
    organizationId: 'acme',
    tier: 'professional',
    bucket: null,
    minute: { limit: 50, used: 3, remaining: 47 },
    hour: { limit: 1000, used: 3 },
    month: { limit: 100_000, used: 3 },
    concurrent: { limit: 50, inFlight: 3 }
  })
  t.match(await policies.usage('acme', { scope: 'organization', tier: 'enterprise' }), { tier: 'enterprise', minute: { limit: 500, used: 3 } })
  t.match(await policies.usage('acme'), { scope: 'tenant', minute: { used: 0 } }, 'the tenant acme is someone else')
  t.match(await policies.usage('nobody', { scope: 'organization' }), { tier: null, minute: { limit: null, used: 0, remaining: null } })
})

t.test('usage of a tenant in an organization: where it was last seen, or where it is told', async t => {
  const { redis, prefix, policies } = await setup(t)
  await count(t, redis, prefix, 'tenant', 'globex', 2, 'acme')
  await count(t, redis, prefix, 'tenant', 'globex', 1)
  t.match(await policies.usage('globex'), { organizationId: null, minute: { used: 1 } }, 'never seen in one: its own keys')
  t.match(await policies.usage('globex', { organizationId: 'acme' }), { scope: 'tenant', organizationId: 'acme', minute: { limit: 10, used: 2 } })

  policies.forRequest('globex', undefined, sharedLimiter, 'acme')
  t.match(await policies.usage('globex'), { organizationId: 'acme', minute: { used: 2 } }, 'seen in acme: its keys there')
  t.match(await policies.usage('globex', { organizationId: 'initech' }), { organizationId: 'initech', minute: { used: 0 } }, 'the organization given wins')

  await policies.close() // writes what it saw
  t.equal(await redis.hget(`${prefix}:v1:{seen-orgs}`, 'globex'), 'acme')
  const other = await manager(t, redis, prefix)
  t.match(await other.usage('globex'), { organizationId: 'acme', minute: { used: 2 } }, 'another instance reads where it was seen')

  other.forRequest('globex', undefined, sharedLimiter)
  t.match(await other.usage('globex'), { organizationId: null, minute: { used: 1 } }, 'seen again without one: its own keys')
  await other.close()
  t.equal(await redis.hget(`${prefix}:v1:{seen-orgs}`, 'globex'), null, 'the record is removed')
})

t.test('usage of a shared route budget: its counters, its limits as registered here', async t => {
  const { redis, prefix, policies } = await setup(t)
  await count(t, redis, prefix, 'route', 'search', 4)
  t.match(await policies.usage('search', { scope: 'route' }), { scope: 'route', id: 'search', tier: null, organizationId: null, minute: { limit: null, used: 4 } }, 'not registered: no limits known')
  policies.registerSharedBudget('search', LIMITED)
  await policies.setEnvironmentMultiplier('staging', 0.5)
  t.match(await policies.usage('search', { scope: 'route' }), { minute: { limit: 50, used: 4, remaining: 46 }, concurrent: { limit: 5, inFlight: 4 } }, 'registered, with the multiplier')
})

t.test('resets: an organization\'s forgets its own counters only; a tenant\'s forgets its keys everywhere', async t => {
  const { redis, prefix, policies } = await setup(t)
  const other = await manager(t, redis, prefix)
  await count(t, redis, prefix, 'organization', 'acme', 3)
  await count(t, redis, prefix, 'tenant', 'globex', 2, 'acme')
  await count(t, redis, prefix, 'tenant', 'globex', 1)
  await count(t, redis, prefix, 'tenant', 'initech', 1, 'acme')

  const generation = other.generation
  await policies.resetUsage('acme', { scope: 'organization' })
  t.match(await policies.usage('acme', { scope: 'organization' }), { minute: { used: 0 }, concurrent: { inFlight: 0 } })
  t.match(await policies.usage('globex', { organizationId: 'acme' }), { minute: { used: 2 } }, 'its tenants keep theirs')
  t.ok(await within(1000, async () => other.generation > generation) < 1000, 'every instance hears of it (rejections they remember are dropped)')

  policies.forRequest('globex', undefined, sharedLimiter, 'acme')
  await policies.resetUsage('globex')
  t.match(await policies.usage('globex', { organizationId: 'acme' }), { minute: { used: 0 }, concurrent: { inFlight: 0 } }, 'its keys under the organization it was seen in')
  t.equal((await redis.keys(`${prefix}:v1:{t:globex}*`)).length, 0, 'and its own keys')
  t.match(await policies.usage('initech', { organizationId: 'acme' }), { minute: { used: 1 } }, 'another tenant of the organization keeps its counters')

  await policies.resetUsage('initech', { organizationId: 'acme' })
  t.match(await policies.usage('initech', { organizationId: 'acme' }), { minute: { used: 0 } }, 'the organization given')
})

t.test('without Redis: organizations live in the process', async t => {
  const policies = new PolicyManager(undefined, { environment: 'staging' })
  await policies.start()
  t.teardown(() => policies.close())
  await policies.setOrganizationOverride('acme', { requestsPerMinute: 9 })
  await policies.setOrganizationTier('acme', 'starter')
  t.same(policies.forOrganization('acme', undefined), { tier: 'starter', limits: { requestsPerMinute: 9, requestsPerHour: 100, concurrentRequests: 10, monthlyQuota: 10_000 } })
  policies.forOrganization('acme', 'enterprise')
  t.match(await policies.resolveOrganization('acme'), { tier: 'enterprise', tierSource: 'seen', limits: { requestsPerMinute: 9 } })
})
