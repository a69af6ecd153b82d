// Tiers configured in a service's code are recorded under its prefix at boot, so maestro-rl and the
// admin routes of every service on the prefix know them; a prefix nothing is stored under is named.
import t from 'tap'
import rateLimitAdmin from '../dist/admin.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { cliFor } from './helpers/cli.js'
import { sharedRedis } from './helpers/redis.js'
import { within } from './helpers/wait.js'

const GOLD = { requestsPerMinute: 70, requestsPerHour: 700, concurrentRequests: null, monthlyQuota: 7000 }

/** A service on `keyPrefix` whose logged warnings land in `warnings`. */
async function service (t: Parameters<typeof buildApp>[0], keyPrefix: string, tiers: Record<string, typeof GOLD>, warnings: string[] = []): Promise<Awaited<ReturnType<typeof buildApp>>> {
  const stream = { write: (line: string) => { const entry = JSON.parse(line); if (entry.level === 40) warnings.push(entry.msg) } }
  return await buildApp(t, { kind: 'redis', keyPrefix, options: { tenantExtractor: headerTenant, tiers }, server: { logger: { level: 'warn', stream } } }, app => {
    app.get('/', async () => 'ok')
    app.register(rateLimitAdmin, { prefix: '/admin', authorize: () => {} })
  })
}

t.test('a tier configured in code: maestro-rl sets it as a tenant tier and shows its limits', async t => {
  const { ok, cli, prefix } = cliFor(t, { used: false })
  const app = await service(t, prefix, { gold: GOLD })
  t.same(await ok('tenant-tier', 'set', 'goldco', 'gold'), { tenantId: 'goldco', tier: 'gold' })
  t.match(await ok('show', 'goldco'), { tier: 'gold', tierSource: 'tenant', limits: GOLD })
  t.match(await ok('show', 'acme', '--tier', 'gold'), { tier: 'gold', tierSource: 'request', limits: GOLD })
  t.same((await ok('tier', 'list')).gold, { limits: GOLD, source: 'configured' })
  const undefinedTier = await cli('show', 'acme', '--tier', 'platinum')
  t.equal(undefinedTier.code, 2, 'a tier no service configured is still refused')
  t.match(undefinedTier.stderr, /tier platinum is not defined/)

  // The service holds goldco to gold (the tenant tier the CLI set), and so does usage.
  t.ok(await within(1000, async () => (await app.inject({ url: '/', headers: { 'x-tenant': 'goldco' } })).headers['x-ratelimit-limit-minute'] === '70'))
  t.match(await ok('usage', 'goldco', '--tier', 'gold'), { tier: 'gold', minute: { limit: 70 } })
})

t.test('admin routes of a service that does not configure a tier know it from the one that does', async t => {
  const redis = sharedRedis(t)
  const { prefix } = cliFor(t, { used: false })
  await service(t, prefix, { gold: GOLD })
  const plain = await service(t, prefix, {})
  t.same((await plain.inject({ url: '/admin/tiers' })).json().gold, { limits: GOLD, source: 'configured' })
  const res = await plain.inject({ method: 'PUT', url: '/admin/tenants/goldco/tier', payload: { tier: 'gold' } })
  t.equal(res.statusCode, 200, res.body)
  t.match((await plain.inject({ url: '/admin/tenants/acme/usage?tier=gold' })).json(), { tier: 'gold', minute: { limit: 70 } })
  t.equal((await plain.inject({ url: '/', headers: { 'x-tenant': 'goldco' } })).headers['x-ratelimit-limit-minute'], '70', 'its requests too')
  const stored = JSON.parse(await redis.hget(`${prefix}:v1:{policies}`, 'configuredTier:gold') as string)
  t.same(stored.value.limits, GOLD)
  t.type(stored.value.by, 'string')
})

t.test('one tier name configured differently by two services: the last to boot wins, and says so', async t => {
  const { ok, prefix } = cliFor(t, { used: false })
  await service(t, prefix, { gold: GOLD })
  const warnings: string[] = []
  const bigger = { ...GOLD, requestsPerMinute: 90 }
  const second = await service(t, prefix, { gold: bigger }, warnings)
  t.match(warnings.join('\n'), /tier gold is configured with other limits by another service on this prefix/)
  t.match(await ok('show', 'acme', '--tier', 'gold'), { limits: { requestsPerMinute: 90 } })
  t.equal((await second.inject({ url: '/', headers: { 'x-tenant': 'a', 'x-tier': 'gold' } })).headers['x-ratelimit-limit-minute'], '90', 'each service holds requests to its own definition')

  // A third service with the same definition as the record writes nothing and warns of nothing.
  const redis = sharedRedis(t)
  const before = await redis.hget(`${prefix}:v1:{policies}`, '__version')
  const quiet: string[] = []
  await service(t, prefix, { gold: bigger }, quiet)
  t.equal(await redis.hget(`${prefix}:v1:{policies}`, '__version'), before, 'no write when the record already says the same')
  t.same(quiet, [])
})

t.test('maestro-rl on a prefix nothing is stored under says so: reads exit 3, changes go through with a note', async t => {
  const { cli, ok, prefix } = cliFor(t, { used: false })
  for (const args of [['usage', 'acme'], ['show', 'acme'], ['tier', 'list'], ['override', 'get', 'acme']]) {
    const result = await cli(...args)
    t.equal(result.code, 3, args.join(' '))
    t.equal(result.stdout, '', 'no zeros printed')
    t.match(result.stderr, new RegExp(`^maestro-rl: nothing is stored under prefix ${prefix} at redis://[^ ]+: no service has started on it and no policy was set \\(check --prefix\\)\\n$`))
  }
  const change = await cli('override', 'set', 'acme', '--per-minute', '5')
  t.equal(change.code, 0)
  t.match(change.stderr, /note: nothing is stored under prefix .*; making the change anyway/)
  t.match(await ok('show', 'acme'), { limits: { requestsPerMinute: 5 } }, 'the prefix is in use from then on')
})
