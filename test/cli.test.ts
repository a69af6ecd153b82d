// maestro-rl, the built command-line tool, run as a child process against real Redis.
import t from 'tap'
import { buildApp, headerTenant } from './helpers/app.js'
import { cliFor, run } from './helpers/cli.js'
import { within } from './helpers/wait.js'

async function inBatches<T, R> (items: T[], size: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = []
  for (let i = 0; i < items.length; i += size) out.push(...await Promise.all(items.slice(i, i + size).map(fn)))
  return out
}

t.test('help', async t => {
  for (const result of await Promise.all([['help'], ['--help'], ['show', '-h']].map(async args => await run(args)))) {
    t.equal(result.code, 0)
    t.match(result.stdout, /Usage: maestro-rl <command>/)
    t.match(result.stdout, /override set <tenant>/)
    t.match(result.stdout, /org override set <org>/)
  }
  const none = await run([])
  t.equal(none.code, 2, 'no command is bad usage')
  t.match(none.stderr, /Usage/)
})

t.test('override set, get, rm; show reflects them', async t => {
  const { ok, cli } = cliFor(t)
  t.match(await ok('show', 'acme'), { tenantId: 'acme', tier: 'starter', tierSource: 'default', override: null, limits: { requestsPerMinute: 10 } })
  t.same(await ok('override', 'set', 'acme', '--per-minute', '42', '--monthly', 'unlimited'), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
  t.same(await ok('override', 'get', 'acme'), { requestsPerMinute: 42, monthlyQuota: null, expiresAt: null })
  const shown = await ok('show', 'acme', '--tier', 'professional')
  t.match(shown, { tier: 'professional', tierSource: 'request', limits: { requestsPerMinute: 42, requestsPerHour: 1000, concurrentRequests: 50, monthlyQuota: null } })
  t.same(shown.sources, { requestsPerMinute: 'override', requestsPerHour: 'tier', concurrentRequests: 'tier', monthlyQuota: 'override' })
  const timed = await ok('override', 'set', 'acme', '--per-hour', '300', '--concurrent', '3', '--expires', '60')
  t.match(timed, { requestsPerHour: 300, concurrentRequests: 3 })
  t.ok(timed.expiresAt > Date.now() + 50_000 && timed.expiresAt <= Date.now() + 60_000, 'expires in 60 s')
  t.same(await ok('override', 'rm', 'acme'), { removed: true })
  t.equal(await ok('override', 'get', 'acme'), null)
  const again = await cli('override', 'rm', 'acme')
  t.equal(again.code, 0, 'removing nothing is not an error')
  t.same(JSON.parse(again.stdout), { removed: false })
  t.match(again.stderr, /nothing to remove: tenant acme has no override/)
  t.match(await ok('show', 'acme'), { override: null, limits: { requestsPerMinute: 10 } })
})

t.test('multiplier set, get, rm', async t => {
  const { ok } = cliFor(t)
  t.same(await ok('multiplier', 'get', 'staging'), { environment: 'staging', multiplier: 1 })
  t.same(await ok('multiplier', 'set', 'staging', '0.5'), { environment: 'staging', multiplier: 0.5 })
  t.same(await ok('multiplier', 'get', 'staging'), { environment: 'staging', multiplier: 0.5 })
  t.same(await ok('multiplier', 'get', '--env', 'staging'), { environment: 'staging', multiplier: 0.5 }, '--env names the environment')
  t.match(await ok('show', 'acme', '--env', 'staging'), { environment: 'staging', multiplier: 0.5, limits: { requestsPerMinute: 5, requestsPerHour: 50 } })
  t.match(await ok('show', 'acme', '--env', 'production'), { multiplier: 1, limits: { requestsPerMinute: 10 } })
  t.same(await ok('multiplier', 'rm', 'staging'), { removed: true })
  t.same(await ok('multiplier', 'get', 'staging'), { environment: 'staging', multiplier: 1 })
})

t.test('block and unblock', async t => {
  const { ok } = cliFor(t)
  t.same(await ok('block', 'abuser', '--reason', 'scraping, see ticket 123'), { tenantId: 'abuser', blocked: { reason: 'scraping, see ticket 123', expiresAt: null } })
  t.same((await ok('show', 'abuser')).blocked, { reason: 'scraping, see ticket 123', expiresAt: null })
  const timed = await ok('block', 'other', '--seconds', '30')
  t.equal(timed.blocked.reason, null)
  t.ok(timed.blocked.expiresAt > Date.now(), 'a timed block carries its end')
  t.same(await ok('unblock', 'abuser'), { removed: true })
  t.equal((await ok('show', 'abuser')).blocked, null)
  t.same(await ok('unblock', 'abuser'), { removed: false })
})

t.test('tiers, tenant tiers, shadow mode, usage', async t => {
  const { ok, prefix } = cliFor(t)
  const gold = { requestsPerMinute: 70, requestsPerHour: 700, concurrentRequests: null, monthlyQuota: 7000 }
  t.same(await ok('tier', 'set', 'gold', '--per-minute', '70', '--per-hour', '700', '--concurrent', 'unlimited', '--monthly', '7000'), { name: 'gold', limits: gold, source: 'runtime' })
  const tiers = await ok('tier', 'list')
  t.same(tiers.gold, { limits: gold, source: 'runtime' })
  t.equal(tiers.starter.source, 'configured')
  t.same(await ok('tenant-tier', 'set', 'acme', 'gold'), { tenantId: 'acme', tier: 'gold' })
  t.match(await ok('show', 'acme'), { tier: 'gold', tierSource: 'tenant', limits: gold })

  t.same(await ok('shadow', 'on', '--tenant', 'trial'), { global: false, tiers: [], tenants: ['trial'] })
  t.same(await ok('shadow', 'on', '--tier', 'gold'), { global: false, tiers: ['gold'], tenants: ['trial'] })
  t.same(await ok('shadow', 'on'), { global: true, tiers: ['gold'], tenants: ['trial'] })
  t.equal((await ok('show', 'acme')).shadow, true)
  t.same(await ok('shadow', 'off'), { global: false, tiers: ['gold'], tenants: ['trial'] })
  t.same(await ok('shadow', 'off', '--tier', 'gold'), { global: false, tiers: [], tenants: ['trial'] })
  t.same(await ok('shadow', 'status'), { global: false, tiers: [], tenants: ['trial'] })

  // Usage counted by a running service on the same prefix, read and reset by the CLI.
  const app = await buildApp(t, { kind: 'redis', keyPrefix: prefix, options: { tenantExtractor: headerTenant } })
  for (let i = 0; i < 3; i++) await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })
  t.match(await ok('usage', 'acme'), { tenantId: 'acme', tier: 'gold', bucket: null, minute: { limit: 70, used: 3, remaining: 67 }, concurrent: { limit: null, inFlight: 0 } })
  t.match(await ok('usage', 'acme', '--bucket', 'search'), { bucket: 'search', minute: { used: 0 } })
  t.same(await ok('reset-usage', 'acme'), { tenantId: 'acme', reset: true })
  t.match(await app.policies.usage('acme'), { minute: { used: 0 } })

  t.same(await ok('tenant-tier', 'rm', 'acme'), { removed: true })
  t.same(await ok('tier', 'rm', 'gold'), { removed: true })
  t.equal((await ok('tier', 'list')).gold, undefined)
})

t.test('a change made by the CLI is live in a running service within a second', async t => {
  const { ok, prefix } = cliFor(t)
  const app = await buildApp(t, { kind: 'redis', keyPrefix: prefix, options: { tenantExtractor: headerTenant, policyReloadSeconds: 3600 } })
  const limit = async (): Promise<unknown> => (await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })).headers['x-ratelimit-limit-minute']
  t.equal(await limit(), '10')

  await ok('override', 'set', 'acme', '--per-minute', '250')
  const overrideMs = await within(1000, async () => await limit() === '250')
  t.ok(overrideMs < 1000, `override live after ${overrideMs} ms`)
  t.same(await app.policies.getTenantOverride('acme'), { requestsPerMinute: 250, expiresAt: null })

  await ok('block', 'acme', '--reason', 'paused')
  const blockMs = await within(1000, async () => (await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })).statusCode === 403)
  t.ok(blockMs < 1000, `block live after ${blockMs} ms`)
  await ok('unblock', 'acme')
  t.ok(await within(1000, async () => (await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })).statusCode === 200) < 1000, 'unblock too')

  await ok('multiplier', 'set', app.policies.environment, '2')
  t.ok(await within(1000, async () => await limit() === '500') < 1000, 'multiplier too')
})

t.test('bad usage or refused input: exit 2 with a message naming the field', async t => {
  const { cli, ok } = cliFor(t)
  await ok('override', 'set', 'acme', '--per-minute', '5')
  const cases: Array<[string[], RegExp]> = [
    [['override', 'set', 'acme', '--per-minute=-1'], /--per-minute must be a whole number from 0 to 9007199254740991, or "unlimited" \(got "-1"\)/],
    [['override', 'set', 'acme', '--per-minute', 'lots'], /--per-minute must be a whole number .*\(got "lots"\)/],
    [['override', 'set', 'acme', '--per-hour', '1.5'], /--per-hour must be a whole number .*\(got "1\.5"\)/],
    // Too large for a double: read as Infinity, which would mean unlimited.
    [['override', 'set', 'acme', '--per-minute', '1e400'], /--per-minute must be a whole number .*\(got "1e400"\)/],
    [['override', 'set', 'acme', '--monthly', '9007199254740993'], /--monthly must be a whole number/],
    [['override', 'set', 'acme', '--concurrent', 'Infinity'], /--concurrent must be a whole number/],
    [['tier', 'set', 'gold', '--per-minute', '1', '--per-hour', '1e400', '--concurrent', '1', '--monthly', '1'], /--per-hour must be a whole number/],
    [['override', 'set', 'acme'], /override must set at least one limit/],
    [['override', 'set', 'acme', '--per-minute', '5', '--expires', '0'], /override\.expiresInSeconds must be > 0/],
    [['multiplier', 'set', 'staging', '0'], /multiplier must be > 0/],
    [['multiplier', 'set', 'staging', 'double'], /multiplier must be number/],
    [['tier', 'set', 'gold', '--per-minute', '1'], /limits\.requestsPerHour is required/],
    [['tier', 'set', 'bad*name', '--per-minute', '1', '--per-hour', '1', '--concurrent', '1', '--monthly', '1'], /name must match pattern/],
    [['tenant-tier', 'set', 'acme', 'gold'], /tier gold is not defined/],
    [['block', 'acme', '--seconds=-5'], /block\.seconds must be > 0/],
    [['usage', 'acme', '--bucket', ''], /options\.bucket must not have fewer than 1 characters/],
    [['show', 'acme', '--tier', 'no tier'], /tier must match pattern/],
    [['show', 'acme', '--env', ''], /options\.environment/],
    [['show'], /show takes <tenant>/],
    [['show', 'a', 'b'], /show takes <tenant>/],
    [['show', 'acme', '--seconds', '5'], /show does not take --seconds/],
    [['block', 'acme', '--second', '5'], /Unknown option '--second'/],
    [['override', 'put', 'acme'], /override needs one of: set, get, rm \(not put\)/],
    [['shadow', 'on', '--tier', 'gold', '--tenant', 'acme'], /--tier or --tenant, not both/],
    [['explode'], /unknown command explode/],
    [['org'], /org needs one of: show, usage, reset-usage, override set, override get, override rm, tier set, tier get, tier rm/],
    [['org', 'override', 'put', 'acme'], /org override needs one of: set, get, rm \(not put\)/],
    [['org', 'tier', 'set', 'acme', 'gold'], /tier gold is not defined/],
    [['org', 'override', 'set', 'acme', '--per-minute=-1'], /--per-minute must be a whole number/],
    [['org', 'override', 'set', '', '--per-minute', '1'], /organizationId must not have fewer than 1 characters/],
    [['org', 'usage', 'acme', '--bucket', 'search'], /org usage does not take --bucket/],
    [['org', 'show'], /org show takes <org>/],
    [['usage', 'acme', '--org', ''], /options\.organizationId must not have fewer than 1 characters/],
    [['show', 'acme', '--redis', 'http://127.0.0.1:6379'], /--redis must be a redis:\/\/ or rediss:\/\/ URL/]
  ]
  // Independent and refused: run a few at a time.
  const results = await inBatches(cases, 6, async ([args]) => await cli(...args))
  for (const [i, [args, message]] of cases.entries()) {
    const result = results[i]
    t.equal(result.code, 2, args.join(' '))
    t.match(result.stderr, message, args.join(' '))
    t.match(result.stderr, /^maestro-rl: [^\n]+\n$/, 'one line')
    t.equal(result.stdout, '', 'nothing on stdout')
  }
  const prefix = await run(['show', 'acme', '--prefix', 'has space'])
  t.equal(prefix.code, 2)
  t.match(prefix.stderr, /options\.keyPrefix must match pattern/)
  t.same(await ok('override', 'get', 'acme'), { requestsPerMinute: 5, expiresAt: null }, 'nothing changed')
  t.equal((await ok('tier', 'list')).gold, undefined)
})

t.test('unreachable Redis: exit 1 within a few seconds, with a clear message', async t => {
  const result = await run(['show', 'acme', '--redis', 'redis://127.0.0.1:1'])
  t.equal(result.code, 1)
  t.match(result.stderr, /^maestro-rl: cannot reach Redis at redis:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/)
  t.equal(result.stdout, '')
  t.ok(result.ms < 10_000, `failed after ${result.ms} ms (no reconnection attempts)`)
  const viaEnv = await run(['override', 'set', 'acme', '--per-minute', '5'], { REDIS_URL: 'redis://user:s3cret@127.0.0.1:1' })
  t.equal(viaEnv.code, 1, 'REDIS_URL is the default')
  t.match(viaEnv.stderr, /redis:\/\/user:\*\*\*@127\.0\.0\.1:1/, 'the password is not printed')
  t.notMatch(viaEnv.stderr, /s3cret/)
})

t.test('a Redis URL is never echoed with its password, parsable or not', async t => {
  const cases: Array<[string[], Record<string, string>, RegExp]> = [
    [['--redis', 'redis://user:secret@host:notaport'], {}, /^maestro-rl: --redis must be a redis:\/\/ or rediss:\/\/ URL \(the value does not parse/],
    [['--redis', '::::secret'], {}, /--redis must be a redis:\/\/ or rediss:\/\/ URL/],
    [['--redis', 'secret@127.0.0.1:1'], {}, /--redis must be a redis:\/\/ or rediss:\/\/ URL/],
    [[], { REDIS_URL: 'redis://:secret@[::1' }, /^maestro-rl: REDIS_URL must be a redis:\/\/ or rediss:\/\/ URL/],
    [['--redis', 'http://user:secret@127.0.0.1:6379'], {}, /got http:\/\/user:\*\*\*@127\.0\.0\.1:6379\//],
    [['--redis', 'redis://127.0.0.1:1/0?password=secret&family=4'], {}, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1\/0\?password=\*\*\*&family=\*\*\*: /]
  ]
  const results = await inBatches(cases, 6, async ([args, env]) => await run(['show', 'acme', ...args], env))
  for (const [i, [args, env, message]] of cases.entries()) {
    const { code, stdout, stderr } = results[i]
    const name = JSON.stringify([...args, ...Object.values(env)])
    t.ok(code === 1 || code === 2, `${name}: refused`)
    t.match(stderr, message, name)
    t.notMatch(stderr, /secret/, `${name}: the password is not printed`)
    t.equal(stdout, '')
  }
})
