// Usage that outlives the month: a tenant's month counts stay readable for billing after its
// counters and their window buckets are gone, on both stores; and for as long as the option says.
import type { Redis } from 'ioredis'
import t from 'tap'
import { PolicyManager } from '../dist/index.js'
import { limits, makeStore, STORE_KINDS } from './helpers/stores.js'
import { buildApp, headerTenant } from './helpers/app.js'

async function collect<T> (rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const row of rows) out.push(row)
  return out
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store: last month's usage is exported after its counters are gone`, async t => {
    const s = makeStore(t, kind, { usageRetentionMonths: 2 } as never)
    s.clock.now = Date.UTC(2026, 10, 30, 22, 0, 0) // the last hours of November
    const acme = s.keys('acme')
    const capped = s.keys('acme', 'exports')
    s.store.describeUsage?.(acme, { scope: 'tenant', id: 'acme', tier: 'starter' })
    for (let i = 0; i < 7; i++) await s.store.admit({ keys: acme, cost: 1, limits: limits(100, 1000, 10_000), leaseId: '', keepUsage: true })
    for (let i = 0; i < 2; i++) await s.store.admit({ keys: capped, cost: 1, limits: limits(100, 1000, 10_000), bucketQuota: 5, leaseId: '', keepUsage: true })
    await s.store.admit({ keys: s.keys('no-quota'), cost: 1, limits: limits(100), leaseId: '', keepUsage: true })

    // December: the windows are gone (Redis expires them; here they are deleted, as their expiry would).
    s.clock.now = Date.UTC(2026, 11, 3, 12, 0, 0)
    if (kind === 'redis') {
      const redis = s.redis as Redis
      await redis.del(acme.counters, capped.counters, s.keys('no-quota').counters)
      t.same(await redis.keys(`${s.prefix}:*:n`), [], 'no counters left')
    } else {
      await s.store.resetSubject(acme.month.slice(0, -'all:n'.length).replace('usage', ''))
    }
    const policies = new PolicyManager(undefined, { keyPrefix: s.prefix, store: s.store })
    await new Promise(resolve => setTimeout(resolve, 1100)) // the record's name is written in a batch
    const rows = await collect(policies.usageReport({ month: '2026-11' }))
    t.same(rows, [
      { tenantId: 'acme', scope: 'tenant', tier: 'starter', bucket: null, used: 9, quota: 10_000 },
      { tenantId: 'acme', scope: 'tenant', tier: 'starter', bucket: 'exports', used: 2, quota: 5 }
    ], 'the month and the capped bucket; a tenant with no monthly quota counted no month')
    t.same(await collect(policies.usageReport({ month: '2026-12' })), [], 'nothing this month')
    if (kind === 'redis') {
      const ttl = await (s.redis as Redis).pttl(`${s.prefix}:v1:{t:acme}:usage:202611`)
      const keptUntil = Date.UTC(2026, 11, 1) + 2 * 31 * 86_400_000
      // Kept until two months (of 31 days) past November's end: the script sets it on the store's
      // clock (here November 30), the record's name on this process's (both are Redis's in service).
      const until = [keptUntil - Date.UTC(2026, 10, 30, 22, 0, 0), keptUntil - Date.now()]
      t.ok(ttl >= Math.min(...until) - 5000 && ttl <= Math.max(...until) + 5000, `kept two months (usageRetentionMonths) past November (${Math.round(ttl / 86_400_000)} days left)`)
    } else {
      s.clock.now = Date.UTC(2027, 1, 5) // past two months of 31 days after November
      ;(s.store as unknown as { sweep: () => void }).sweep()
      t.same(await collect(policies.usageReport({ month: '2026-11' })), [], 'and dropped after usageRetentionMonths')
    }
  })
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store, through the plugin: a route's own capped bucket is reported by its name`, async t => {
    const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant } }, app => {
      app.get('/export', { config: { rateLimit: { limits: { monthlyQuota: 5 } } } }, async () => 'csv')
      app.get('/', async () => 'ok')
    })
    for (const url of ['/', '/export', '/export']) t.equal((await app.inject({ url, headers: { 'x-tenant': 'acme', 'x-tier': 'starter' } })).statusCode, 200)
    await new Promise(resolve => setTimeout(resolve, 1100)) // names are written in a batch
    const month = new Date().toISOString().slice(0, 7)
    t.same(await collect(app.policies.usageReport({ month })), [
      { tenantId: 'acme', scope: 'tenant', tier: 'starter', bucket: null, used: 3, quota: 10_000 },
      { tenantId: 'acme', scope: 'tenant', tier: 'starter', bucket: 'route:GET /export', used: 2, quota: 5 }
    ])
  })
}
