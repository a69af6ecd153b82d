// Metrics read back from a real prom-client registry after real traffic through Fastify.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { register, Registry } from 'prom-client'
import t from 'tap'
import { buildApp, headerTenant } from './helpers/app.js'
import { privateRedis } from './helpers/redis.js'
import { promtool, runPromtool } from './helpers/promtool.js'
import { STORE_KINDS } from './helpers/stores.js'
import { writeObservability } from '../scripts/observability-for-prefix.mjs'

type Labels = Record<string, string>

async function value (registry: Registry, name: string, labels: Labels = {}): Promise<number> {
  // Histograms are listed under their base name, with _bucket/_count/_sum samples.
  const all = await registry.getMetricsAsJSON()
  const metric = all.find(m => m.name === name) ?? all.find(m => name.startsWith(m.name + '_'))
  if (metric === undefined) return Number.NaN
  return (metric.values as Array<{ value: number, labels: Labels, metricName?: string }>)
    .filter(v => v.metricName === undefined || v.metricName === name)
    .filter(v => Object.entries(labels).every(([k, l]) => String(v.labels[k]) === l))
    .reduce((sum, v) => sum + v.value, 0)
}

async function labelValues (registry: Registry, name: string, label: string): Promise<string[]> {
  const metric = (await registry.getMetricsAsJSON()).find(m => m.name === name)
  return [...new Set((metric?.values as Array<{ labels: Labels }> ?? []).map(v => String(v.labels[label])))].sort()
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store: outcomes and reasons`, async t => {
    const registry = new Registry()
    const app = await buildApp(t, {
      kind,
      options: {
        tenantExtractor: headerTenant,
        metrics: { registry },
        tiers: {
          one: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: 1, monthlyQuota: null },
          quota: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: null, monthlyQuota: 1 }
        }
      }
    }, app => {
      app.get('/users/:id', async () => 'ok')
      app.get('/hang', async () => { await sleep(200); return 'late' })
    })
    for (let i = 0; i < 6; i++) await app.inject({ url: `/users/${i}`, remoteAddress: '10.0.0.1' })
    await app.inject({ url: '/users/1', headers: { 'x-tenant': 'root', 'x-tier': 'platform_admin' } })
    await app.inject({ url: '/users/1', headers: { 'x-tenant': 'q', 'x-tier': 'quota' } })
    await app.inject({ url: '/users/1', headers: { 'x-tenant': 'q', 'x-tier': 'quota' } })
    const hanging = app.inject({ url: '/hang', headers: { 'x-tenant': 'c', 'x-tier': 'one' } })
    await sleep(50)
    t.equal(await value(registry, 'rate_limit_in_flight_leases', { tier: 'one' }), 1, 'one lease in flight')
    await app.inject({ url: '/hang', headers: { 'x-tenant': 'c', 'x-tier': 'one' } })
    await hanging
    t.equal(await value(registry, 'rate_limit_in_flight_leases', { tier: 'one' }), 0, 'given back')
    await app.policies.block('evil')
    await app.inject({ url: '/users/1', headers: { 'x-tenant': 'evil' } })

    const req = 'rate_limit_requests_total'
    t.equal(await value(registry, req, { tenant: 'anonymous', tier: 'anonymous', endpoint: '/users/:id', status: 'allowed' }), 5, 'route pattern, never the raw URL')
    t.equal(await value(registry, req, { tenant: 'anonymous', status: 'rejected' }), 1)
    t.equal(await value(registry, req, { tenant: 'root', status: 'bypassed' }), 1)
    t.equal(await value(registry, 'rate_limit_rejections_total', { reason: 'rate_limit_exceeded' }), 1)
    t.equal(await value(registry, 'rate_limit_rejections_total', { tenant: 'q', reason: 'quota_exceeded' }), 1)
    t.equal(await value(registry, 'rate_limit_rejections_total', { tenant: 'c', endpoint: '/hang', reason: 'concurrent_limit_exceeded' }), 1)
    t.equal(await value(registry, 'rate_limit_rejections_total', { tenant: 'evil', reason: 'blocked' }), 1)
    t.notOk((await labelValues(registry, req, 'endpoint')).some(e => /\/users\/\d/.test(e)), 'no raw URLs')
    t.equal(await value(registry, 'rate_limit_decision_duration_seconds_count', { store: kind }), 10, 'one latency sample per store decision (6 anonymous, 2 quota, 2 concurrency)')
    t.equal(await value(registry, 'rate_limit_near_limit_total', { tenant: 'anonymous', window: 'minute' }), 2, 'admitted at 4/5 and 5/5 of the minute')
    t.equal(await value(registry, 'rate_limit_quota_used_ratio', { tenant: 'q' }), 1, 'quota used ratio')
  })
}

// Per-request counts are tallied in plain numbers and handed to prom-client when it is read.
t.test('tallied counts are exact whenever they are read, across instances sharing a registry', async t => {
  const registry = new Registry()
  const options = { metrics: { registry }, tenantExtractor: headerTenant }
  const first = await buildApp(t, { kind: 'memory', options })
  const second = await buildApp(t, { kind: 'memory', options })
  const requests = registry.getSingleMetric('rate_limit_requests_total')
  const inFlight = registry.getSingleMetric('rate_limit_in_flight_leases')
  t.ok(requests !== undefined && inFlight !== undefined)
  const allowed = async (): Promise<number> => ((await requests?.get())?.values ?? [])
    .filter(v => v.labels.tenant === 'tally' && v.labels.status === 'allowed')
    .reduce((sum, v) => sum + v.value, 0)
  const held = async (): Promise<number> => ((await inFlight?.get())?.values ?? []).reduce((sum, v) => sum + v.value, 0)
  const headers = { 'x-tenant': 'tally', 'x-tier': 'enterprise' }
  for (let i = 0; i < 3; i++) await first.inject({ url: '/', headers })
  t.equal(await allowed(), 3, 'read through the metric itself, not only a scrape')
  for (let i = 0; i < 4; i++) await second.inject({ url: '/', headers })
  t.equal(await allowed(), 7, 'both instances count into one series')
  t.equal(await value(registry, 'rate_limit_requests_total', { tenant: 'tally', status: 'allowed' }), 7, 'a scrape agrees')
  t.equal(await allowed(), 7, 'reading twice hands nothing over twice')
  t.equal(await held(), 0, 'every lease taken was given back: the gauge nets to zero')
})

t.test('store errors and fail-open decisions are counted', async t => {
  const registry = new Registry()
  const server = await privateRedis(t)
  const redis = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  if (redis.status !== 'ready') await new Promise(resolve => redis.once('ready', resolve))
  const app = await buildApp(t, { kind: 'memory', options: { redis, metrics: { registry } } })
  await server.stop()
  const res = await app.inject({ url: '/' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-ratelimit-status'], 'degraded', 'the admission is marked')
  t.equal(await value(registry, 'rate_limit_store_errors_total', { store: 'redis' }), 1)
  t.equal(await value(registry, 'rate_limit_fail_decisions_total', { mode: 'open' }), 1)
  t.equal(await value(registry, 'rate_limit_requests_total', { status: 'error' }), 1)
})

t.test('shadow decisions are counted apart', async t => {
  const registry = new Registry()
  const app = await buildApp(t, { kind: 'memory', options: { metrics: { registry } } })
  await app.policies.setShadowMode({ scope: 'global' }, true)
  for (let i = 0; i < 7; i++) await app.inject({ url: '/' })
  t.equal(await value(registry, 'rate_limit_requests_total', { status: 'shadow' }), 2)
  t.equal(await value(registry, 'rate_limit_requests_total', { status: 'rejected' }), 0)
})

t.test('tenant labels are capped; the rest roll into other', async t => {
  const registry = new Registry()
  const app = await buildApp(t, { kind: 'memory', options: { tenantExtractor: headerTenant, metrics: { registry, maxTenantLabels: 3 } } })
  for (let i = 0; i < 50; i++) await app.inject({ url: '/', headers: { 'x-tenant': `t${i}` } })
  await app.inject({ url: '/', remoteAddress: '10.1.2.3' })
  t.same(await labelValues(registry, 'rate_limit_requests_total', 'tenant'), ['anonymous', 'other', 't0', 't1', 't2'])
  t.equal(await value(registry, 'rate_limit_requests_total', { tenant: 'other' }), 47)
  t.notOk((await registry.metrics()).includes('10.1.2.3'), 'client addresses are never labels')
})

t.test('tier granularity leaves the tenant label empty', async t => {
  const registry = new Registry()
  const app = await buildApp(t, { kind: 'memory', options: { tenantExtractor: headerTenant, metrics: { registry, tenantLabel: 'tier' } } })
  for (let i = 0; i < 5; i++) await app.inject({ url: '/', headers: { 'x-tenant': `t${i}`, 'x-tier': 'professional' } })
  t.same(await labelValues(registry, 'rate_limit_requests_total', 'tenant'), [''])
  t.equal(await value(registry, 'rate_limit_requests_total', { tier: 'professional' }), 5)
})

t.test('unmatched routes are limited and share one endpoint value', async t => {
  const registry = new Registry()
  const app = await buildApp(t, { kind: 'memory', options: { metrics: { registry } } })
  const codes = []
  for (let i = 0; i < 6; i++) codes.push((await app.inject({ url: `/scan/${i}` })).statusCode)
  t.same(codes, [404, 404, 404, 404, 404, 429], 'a scanner is held to the anonymous limit')
  t.same(await labelValues(registry, 'rate_limit_requests_total', 'endpoint'), ['unmatched'])
})

t.test('the /metrics route and metrics: false', async t => {
  const registry = new Registry()
  const app = await buildApp(t, { kind: 'memory', options: { metrics: { registry, route: true, prefix: 'gw_' } } })
  await app.inject({ url: '/' })
  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain; version=0\.0\.4/)
  t.match(res.body, /gw_rate_limit_requests_total\{tenant="anonymous",tier="anonymous",endpoint="\/",status="allowed"\} 1/)
  t.notOk(res.headers['x-ratelimit-limit-minute'], 'the metrics route is not limited')

  const off = await buildApp(t, { kind: 'memory', options: { metrics: false } })
  await off.inject({ url: '/' })
  t.notMatch(await register.metrics(), /rate_limit_/, 'nothing registered in the default registry')
  const on = await buildApp(t, { kind: 'memory' })
  await on.inject({ url: '/' })
  t.match(await register.metrics(), /rate_limit_requests_total/, 'which is where metrics go by default')
  register.clear()
  t.equal((await off.inject({ url: '/metrics' })).statusCode, 404)
})

const tool = promtool()
t.test('promtool: metrics of a running app, alert rules and their unit tests', { skip: tool.path === undefined ? tool.reason : false }, async t => {
  if (tool.path === undefined) return
  const registry = new Registry()
  const app = await buildApp(t, { kind: 'memory', options: { tenantExtractor: headerTenant, metrics: { registry, route: '/internal/metrics' } } })
  for (let i = 0; i < 12; i++) await app.inject({ url: '/', headers: { 'x-tenant': 'acme', 'x-tier': 'starter' } })
  const text = (await app.inject({ url: '/internal/metrics' })).body
  const metrics = runPromtool(tool.path, ['check', 'metrics'], text)
  t.equal(metrics.status, 0, `promtool check metrics: ${metrics.output}`)
  const rules = runPromtool(tool.path, ['check', 'rules', 'docs/observability/alerts.yml'])
  t.equal(rules.status, 0, rules.output)
  t.match(rules.output, /SUCCESS: 6 rules found/)
  const ruleTests = runPromtool(tool.path, ['test', 'rules', 'docs/observability/alerts.test.yml'])
  t.equal(ruleTests.status, 0, ruleTests.output)

  // Every metric the rules and the dashboard use exists in the app's output.
  const exposed = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)/gm)].flatMap(m => m[2] === 'histogram' ? [m[1] + '_bucket', m[1] + '_count', m[1] + '_sum'] : [m[1]]))
  const used = (source: string): string[] => [...new Set(source.match(/rate_limit_[a-z_]+/g) ?? [])]
  const dashboard = readFileSync('docs/observability/grafana-dashboard.json', 'utf8')
  JSON.parse(dashboard)
  for (const name of [...used(readFileSync('docs/observability/alerts.yml', 'utf8')), ...used(dashboard)]) {
    if (name === 'rate_limit_') continue
    t.ok(exposed.has(name), `${name} is exposed`)
  }
})

t.test('promtool: alert rules, their unit tests and the dashboard written for a metrics prefix', { skip: tool.path === undefined ? tool.reason : false }, async t => {
  if (tool.path === undefined) return
  const prefix = 'gateway_'
  const folder = mkdtempSync(join(tmpdir(), 'rl-observability-'))
  t.teardown(() => rmSync(folder, { recursive: true, force: true }))
  writeObservability(prefix, folder)

  const rules = runPromtool(tool.path, ['check', 'rules', join(folder, 'alerts.yml')])
  t.equal(rules.status, 0, rules.output)
  t.match(rules.output, /SUCCESS: 6 rules found/)
  const ruleTests = runPromtool(tool.path, ['test', 'rules', join(folder, 'alerts.test.yml')])
  t.equal(ruleTests.status, 0, ruleTests.output)
  const alerts = readFileSync(join(folder, 'alerts.yml'), 'utf8')
  t.notMatch(alerts.replace(/gateway_rate_limit_/g, ''), /rate_limit_[a-z]/, 'no unprefixed metric is left in the rules')

  // Every metric the prefixed dashboard queries is one an app with that prefix exposes.
  const registry = new Registry()
  const app = await buildApp(t, { kind: 'memory', options: { tenantExtractor: headerTenant, metrics: { registry, prefix, route: true } } })
  for (let i = 0; i < 12; i++) await app.inject({ url: '/', headers: { 'x-tenant': 'acme', 'x-tier': 'starter' } })
  const text = (await app.inject({ url: '/metrics' })).body
  const exposed = new Set([...text.matchAll(/^# TYPE (\S+) (\S+)/gm)].flatMap(m => m[2] === 'histogram' ? [m[1] + '_bucket', m[1] + '_count', m[1] + '_sum'] : [m[1]]))
  const dashboard = JSON.parse(readFileSync(join(folder, 'grafana-dashboard.json'), 'utf8')) as unknown
  const queries = expressions(dashboard)
  t.ok(queries.length >= 10, `the dashboard's queries are read (${queries.length})`)
  // Metric names, not quoted label values (a reason such as "rate_limit_exceeded").
  const named = new Set(queries.flatMap(q => q.match(/(?<!["\w:])[a-zA-Z_:][a-zA-Z0-9_:]*rate_limit_[a-zA-Z0-9_:]*/g) ?? []))
  t.ok(named.size >= 8, [...named].join(', '))
  for (const name of named) {
    t.ok(name.startsWith(prefix), `${name} carries the prefix`)
    t.ok(exposed.has(name), `${name} is exposed by an app with metrics.prefix ${prefix}`)
  }
})

/** Every PromQL expression of a dashboard: panel targets (`expr`) and template queries (`query`). */
function expressions (node: unknown): string[] {
  if (Array.isArray(node)) return node.flatMap(expressions)
  if (node === null || typeof node !== 'object') return []
  return Object.entries(node).flatMap(([key, value]) =>
    (key === 'expr' || key === 'query' || key === 'definition') && typeof value === 'string' ? [value] : expressions(value))
}
