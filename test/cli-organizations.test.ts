// maestro-rl org …, the built command-line tool run as a child process against real Redis: an
// organization's policies and usage, and a tenant's usage in one.
import t from 'tap'
import { RedisStore } from '../dist/index.js'
import { storeKeys } from '../dist/keys.js'
import { cliFor } from './helpers/cli.js'
import { sharedRedis } from './helpers/redis.js'

t.test('organizations: show, override, tier, usage and its reset; a tenant\'s usage in one', async t => {
  const { ok, cli, prefix } = cliFor(t)
  t.same(await ok('org', 'override', 'set', 'acme', '--per-minute', '42', '--monthly', 'unlimited'), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
  t.same(await ok('org', 'override', 'get', 'acme'), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
  t.same(await ok('org', 'tier', 'set', 'acme', 'professional'), { organizationId: 'acme', tier: 'professional' })
  t.same(await ok('org', 'tier', 'get', 'acme'), { organizationId: 'acme', tier: 'professional' })
  const shown = await ok('org', 'show', 'acme')
  t.match(shown, { organizationId: 'acme', tier: 'professional', tierSource: 'organization', limits: { requestsPerMinute: 42, requestsPerHour: 1000, monthlyQuota: null } })
  t.same(shown.sources, { requestsPerMinute: 'override', requestsPerHour: 'tier', concurrentRequests: 'tier', monthlyQuota: 'override' })
  t.match(await ok('org', 'show', 'acme', '--tier', 'enterprise'), { tier: 'enterprise', tierSource: 'request', limits: { requestsPerHour: 10_000 } })
  t.equal(await ok('override', 'get', 'acme'), null, 'the tenant acme has no override')

  // Counted with the store itself, as the request path will count an organization and its tenants.
  const redis = sharedRedis(t)
  const store = new RedisStore({ client: redis })
  t.teardown(() => store.close())
  const limits = { requestsPerMinute: 100, requestsPerHour: 1000, concurrentRequests: 10, monthlyQuota: 10_000 }
  for (let i = 0; i < 3; i++) await store.admit({ keys: storeKeys(prefix, 'organization', 'acme', undefined), cost: 1, limits, leaseId: `o${i}` })
  for (let i = 0; i < 2; i++) await store.admit({ keys: storeKeys(prefix, 'tenant', 'globex', undefined, 'acme'), cost: 1, limits, leaseId: `t${i}` })
  t.match(await ok('org', 'usage', 'acme'), { scope: 'organization', id: 'acme', tier: 'professional', minute: { limit: 42, used: 3, remaining: 39 } })
  t.match(await ok('usage', 'globex', '--org', 'acme'), { scope: 'tenant', organizationId: 'acme', minute: { limit: 10, used: 2 } })
  t.same(await ok('org', 'reset-usage', 'acme'), { organizationId: 'acme', reset: true })
  t.match(await ok('org', 'usage', 'acme'), { minute: { used: 0 } })
  t.match(await ok('usage', 'globex', '--org', 'acme'), { minute: { used: 2 } }, 'its tenants keep their counters')
  t.same(await ok('reset-usage', 'globex', '--org', 'acme'), { tenantId: 'globex', reset: true })
  t.match(await ok('usage', 'globex', '--org', 'acme'), { minute: { used: 0 } }, 'a tenant\'s reset forgets its keys in the organization')

  t.same(await ok('org', 'override', 'rm', 'acme'), { removed: true })
  t.same(await ok('org', 'tier', 'rm', 'acme'), { removed: true })
  const again = await cli('org', 'tier', 'rm', 'acme')
  t.same([again.code, JSON.parse(again.stdout)], [0, { removed: false }])
  t.match(again.stderr, /nothing to remove: organization acme has no stored tier/)
  t.same(await ok('org', 'tier', 'get', 'acme'), { organizationId: 'acme', tier: null })
  t.match(await ok('org', 'show', 'acme'), { tier: null, tierSource: 'none', override: null, limits: { requestsPerMinute: null } })

  const unused = await cliFor(t, { used: false }).cli('org', 'show', 'acme')
  t.equal(unused.code, 3, 'a read on a prefix nothing is stored under')
})
