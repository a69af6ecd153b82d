// Stored policy entries are checked with the schemas that guard writes: one written straight into
// the hash by another tool or an older version, and unfit, is skipped (logged once and counted), and
// every other entry still applies.
import { Registry } from 'prom-client'
import t, { type Test } from 'tap'
import { POLICY_WRITE_SCRIPT } from '../dist/policies/policy-backend.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'
import { within } from './helpers/wait.js'

type App = Awaited<ReturnType<typeof buildApp>>
type Reply = Awaited<ReturnType<App['inject']>>
interface Teardown { teardown (fn: () => unknown): void }
interface LogLine { level: number, msg: string, field?: string, problem?: string }

const entry = (value: string): string => `{"v":1,"expiresAt":null,"value":${value}}`

interface Probe {
  app: App
  get: (tenant: string, tier?: string) => Promise<Reply>
}

/** 10 requests admitted of 11: the store decides, no breaker is open and no shadow mode is on. */
async function enforced (t: Test, { get }: Probe): Promise<void> {
  const codes = []
  for (let i = 0; i < 11; i++) codes.push((await get('busy')).statusCode)
  t.same(codes, [...Array(10).fill(200), 429], 'the store still decides for everyone')
}

/** Each as another tool could have written it: field, stored text, what must hold. */
const CASES: Array<[string, string, (t: Test, probe: Probe) => Promise<void>]> = [
  ['override:acme', entry('"abc"'), async (t, { get }) => {
    t.same(await limit(get('acme')), [200, '10'], 'a string override: the tier applies, no 500')
  }],
  ['override:acme', entry('{"requestsPerMinute":"ten"}'), async (t, probe) => {
    for (let i = 0; i < 6; i++) t.same(await limit(probe.get('acme')), [200, '10'], 'a word for a limit: the tier applies')
    await enforced(t, probe)
  }],
  ['override:acme', entry('{"requestsPerMinute":-1}'), async (t, { get }) => {
    const codes = []
    for (let i = 0; i < 30; i++) codes.push((await get('acme')).statusCode)
    t.equal(codes.filter(code => code === 200).length, 10, '-1 is not unlimited: 10 of 30 admitted')
  }],
  ['override:acme', entry('{"requestsPerMinute":1.5}'), async (t, { get }) => {
    t.same(await limit(get('acme')), [200, '10'], 'not a whole number')
  }],
  ['override:acme', entry('{}'), async (t, { get }) => {
    t.same(await limit(get('acme')), [200, '10'], 'an override of nothing')
  }],
  ['override:acme', '{"v":1,"expiresAt":"soon","value":{"requestsPerMinute":5}}', async (t, { get }) => {
    t.same(await limit(get('acme')), [200, '10'], 'an expiry that is not a time')
  }],
  ['override:acme', 'abc', async (t, { get }) => {
    t.same(await limit(get('acme')), [200, '10'], 'not JSON at all')
  }],
  ['tier:starter', entry('"x"'), async (t, { get }) => {
    t.same(await limit(get('plain')), [200, '10'], 'a string tier: the configured starter applies, not unlimited')
    t.equal((await get('plain')).headers['x-ratelimit-limit-month'], '10000')
  }],
  ['tier:half', entry('{"requestsPerMinute":5}'), async (t, { get }) => {
    t.same(await limit(get('plain', 'half')), [200, '10'], 'a tier without all its limits is not defined: the default tier applies')
  }],
  ['multiplier:production', entry('"abc"'), async (t, { get }) => {
    t.same(await limit(get('plain')), [200, '10'], 'a string multiplier: none applies')
    t.equal((await get('plain')).headers['x-ratelimit-limit-month'], '10000')
  }],
  ['multiplier:production', entry('1e400'), async (t, { get }) => {
    t.same(await limit(get('plain')), [200, '10'], 'an infinite multiplier: none applies')
  }],
  ['multiplier:production', entry('0'), async (t, { get }) => {
    t.same(await limit(get('plain')), [200, '10'], 'a zero multiplier: none applies')
  }],
  ['tenantTier:acme', entry('"no such tier!"'), async (t, { app }) => {
    const res = await app.inject({ url: '/', headers: { 'x-tenant': 'acme' } })
    t.same([res.statusCode, res.headers['x-ratelimit-limit-minute']], [200, '10'], 'not a tier name')
  }],
  ['block:acme', entry('"yes"'), async (t, { get }) => {
    t.equal((await get('acme')).statusCode, 200, 'a block that is not an object blocks nobody')
  }],
  ['shadow:global', entry('false'), async (t, probe) => {
    await enforced(t, probe)
  }]
]
/** Sound entries stored beside each unfit one: they still apply. */
const GOOD: Record<string, string> = {
  'override:ok': entry('{"requestsPerMinute":42,"monthlyQuota":null}'),
  'block:bad': entry('{"reason":"fraud"}')
}

async function limit (response: PromiseLike<Reply>): Promise<[number, unknown]> {
  const res = await response
  return [res.statusCode, res.headers['x-ratelimit-limit-minute']]
}

async function counted (registry: Registry): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find(m => m.name === 'rate_limit_policy_invalid_entries_total')
  return (metric?.values as Array<{ value: number }> | undefined)?.reduce((sum, v) => sum + v.value, 0) ?? Number.NaN
}

async function instance (t: Teardown, keyPrefix: string): Promise<{ app: App, registry: Registry, logs: LogLine[] }> {
  const registry = new Registry()
  const logs: LogLine[] = []
  const app = await buildApp(t, {
    kind: 'redis',
    keyPrefix,
    options: { tenantExtractor: headerTenant, environment: 'production', metrics: { registry }, policyReloadSeconds: 3600 },
    server: { logger: { level: 'warn', stream: { write: (line: string) => logs.push(JSON.parse(line) as LogLine) } } }
  })
  return { app, registry, logs }
}

for (const [field, stored, check] of CASES) {
  t.test(`${field} = ${stored}: skipped, logged once, counted; the rest applies`, async t => {
    const redis = sharedRedis(t)
    const keyPrefix = uniquePrefix(t, redis)
    await redis.hset(`${keyPrefix}:v1:{policies}`, { ...GOOD, [field]: stored, __version: 1 })
    const { app, registry, logs } = await instance(t, keyPrefix)
    const get = async (tenant: string, tier = 'starter'): Promise<Reply> => await app.inject({ url: '/', headers: { 'x-tenant': tenant, 'x-tier': tier } })

    await check(t, { app, get })
    t.same(await limit(get('ok')), [200, '42'], 'a sound override beside it applies')
    t.equal((await get('bad')).statusCode, 403, 'a sound block beside it applies')
    const warned = (): LogLine[] => logs.filter(l => l.msg.includes('invalid policy entry'))
    t.match(warned(), [{ level: 40, field }], 'logged as a warning naming the field')
    t.ok(typeof warned()[0]?.problem === 'string', `with the problem: ${warned()[0]?.problem}`)
    t.equal(await counted(registry), 1, 'counted')
    await app.policies.reload()
    t.equal(warned().length, 1, 'once: a reload logs it no more')
    t.equal(await counted(registry), 1, 'nor counts it again')
  })
}

t.test('an unfit change announced by an older writer: treated as a removal, everywhere', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  const { app, registry } = await instance(t, keyPrefix)
  const { app: other } = await instance(t, keyPrefix)
  const seen = async (tenant: string): Promise<[number, unknown]> => await limit(app.inject({ url: '/', headers: { 'x-tenant': tenant, 'x-tier': 'starter' } }))
  // As a writer that does not check values would: the script stores and announces whatever it is given.
  const write = async (field: string, json: string): Promise<void> => {
    await POLICY_WRITE_SCRIPT.run(redis, [`${keyPrefix}:v1:{policies}`, field, json, '', `${keyPrefix}:v1:policies`, JSON.stringify(field), ''])
  }
  await other.policies.setTenantOverride('acme', { requestsPerMinute: 250 })
  t.ok(await within(1000, async () => (await seen('acme'))[1] === '250') < 1000)

  await write('override:acme', '"abc"')
  await write('multiplier:production', '1e400')
  await write('override:marker', '{"requestsPerMinute":33}')
  t.ok(await within(1000, async () => (await seen('marker'))[1] === '33') < 1000, 'the notices arrived')
  t.same(await seen('acme'), [200, '10'], 'the unfit override counts as removed: the tier applies, no 500')
  t.same(await seen('plain'), [200, '10'], 'the unfit multiplier counts as removed')
  t.equal(await counted(registry), 2)
  await app.policies.reload()
  t.same(await seen('acme'), [200, '10'], 'a reload agrees')
  t.equal(await counted(registry), 2, 'and counts nothing again')
})
