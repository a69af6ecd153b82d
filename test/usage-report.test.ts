// fastify.policies.usageReport: a month's usage records, read from Redis (one server, and every
// master of a Cluster), the memory store, and refused with a clear error for a bad month.
import Fastify from 'fastify'
import t from 'tap'
import rateLimiting, { MemoryStore, PolicyManager, RedisStore, type RateLimitStore } from '../dist/index.js'
import { keySlot } from '../dist/store/key-slot.js'
import { privateCluster } from './helpers/cluster.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'
import { expectedRows, sorted, usageKey, writeUsage, type StoredUsage } from './helpers/usage-records.js'

const HOSTILE = ['a,b', 'say "hi"', 'line\nbreak', '{t:evil}*', ' padded ', 'ünïcode ✓', '']

const RECORDS: StoredUsage[] = [
  { scope: 'tenant', id: 'acme', tier: 'professional', q: 1234, quota: 100_000, buckets: { search: { used: 40, quota: 50 }, export: { used: 3, quota: 10 } } },
  { scope: 'tenant', id: 'team-a', organizationId: 'globex', tier: 'starter', q: 7, quota: 1000 },
  { scope: 'organization', id: 'globex', tier: 'enterprise', q: 7 },
  { scope: 'organization', id: 'initech', q: 0 },
  ...HOSTILE.map((id, i) => ({ scope: 'tenant' as const, id, q: i + 1, quota: 10 }))
]

async function collect<T> (rows: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const row of rows) out.push(row)
  return out
}

const allRows = (records: StoredUsage[]): Array<Record<string, unknown>> => sorted(records.flatMap(expectedRows))

t.test('on Redis, through fastify.policies: every record of the month, nothing of another month or prefix', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const other = prefix + '*' // a glob character in a prefix matches nothing but itself
  const pipeline = redis.pipeline()
  for (const usage of RECORDS) writeUsage(pipeline, prefix, usage, '202612')
  writeUsage(pipeline, prefix, { scope: 'tenant', id: 'acme', q: 99 }, '202611')
  writeUsage(pipeline, prefix + 'x', { scope: 'tenant', id: 'elsewhere', q: 1 }, '202612')
  writeUsage(pipeline, other, { scope: 'tenant', id: 'starred', q: 1 }, '202612')
  pipeline.hset(`${prefix}:v1:{t:acme}:all:n`, 'q202612', '1234').expire(`${prefix}:v1:{t:acme}:all:n`, 3600)
  await pipeline.exec()
  t.teardown(async () => { await redis.del(usageKey(prefix + 'x', { scope: 'tenant', id: 'elsewhere', q: 1 }, '202612')) })

  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { redis, keyPrefix: prefix })
  await app.ready()
  const rows = await collect(app.policies.usageReport({ month: '2026-12' }))
  t.same(sorted(rows), allRows(RECORDS))
  t.same(await collect(app.policies.usageReport({ month: '2026-11' })), [{ tenantId: 'acme', scope: 'tenant', tier: null, bucket: null, used: 99, quota: null }])
  t.same(await collect(app.policies.usageReport({ month: '2027-01' })), [], 'a month with no records')

  const starred = new PolicyManager(redis, { keyPrefix: other })
  t.teardown(() => starred.close())
  t.same(await collect(starred.usageReport({ month: '2026-12' })), [{ tenantId: 'starred', scope: 'tenant', tier: null, bucket: null, used: 1, quota: null }],
    'a prefix with * reads its own records only')
})

t.test('a month is YYYY-MM of a real month: anything else is refused before anything is read', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { store: 'memory' })
  await app.ready()
  for (const month of ['2026-13', '2026-00', '2026-1', '26-01', '202612', '2026-12-01', ' 2026-12', '1969-12', '', 12, null, undefined]) {
    t.throws(() => app.policies.usageReport({ month } as any), { code: 'FST_MAESTRO_RL_INVALID_POLICY', statusCode: 400, message: /month must be a month as YYYY-MM/ }, `month ${JSON.stringify(month)}`)
  }
  t.throws(() => app.policies.usageReport(undefined as any), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message: /options must be an object/ })
  t.throws(() => app.policies.usageReport({ month: '2026-12', tenant: 'acme' } as any), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message: /options\.tenant is not a known field/ })
  t.same(await collect(app.policies.usageReport({ month: '1970-01' })), [])
  t.same(await collect(app.policies.usageReport({ month: '9999-12' })), [])
})

t.test('a stored record that does not fit the format is an error naming the key and the field', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const store = new RedisStore({ client: redis })
  const key = `${prefix}:v1:{t:acme}:usage:202612`
  for (const [fields, problem] of [
    [{ id: 'acme', scope: 'route', q: '1' }, /field scope must be "tenant" or "organization" \(got "route"\)/],
    [{ id: 'acme', scope: 'tenant', q: '1.5' }, /field q must be a whole number \(got "1\.5"\)/],
    [{ id: 'acme', scope: 'tenant', q: '1', quota: '-1' }, /field quota must be a whole number/],
    [{ id: 'acme', scope: 'tenant', q: '1', 'b:search': 'x' }, /field b:search must be a whole number/]
  ] as const) {
    await redis.del(key)
    await redis.hset(key, fields)
    await t.rejects(collect(store.usageMonth('202612', prefix)), { code: 'FST_MAESTRO_RL_STORE_REPLY', message: new RegExp(`usage record ${key.replace(/[{}]/g, '\\$&')}: `) })
    await t.rejects(collect(store.usageMonth('202612', prefix)), { message: problem })
  }
  // Counted and not named yet (the name is written a moment later): the id the key holds.
  await redis.del(key)
  await redis.hset(key, { q: '3', quota: '10' })
  t.same(await collect(store.usageMonth('202612', prefix)), [{ scope: 'tenant', id: 'acme', tier: null, bucket: null, used: 3, quota: 10 }])
  // Named and never counted (a tenant without a monthly quota): no usage.
  await redis.del(key)
  await redis.hset(key, { id: 'acme', scope: 'tenant', tier: 'gold' })
  t.same(await collect(store.usageMonth('202612', prefix)), [])
})

t.test('a store without usageMonth: usageReport says so', async t => {
  const memory = new MemoryStore()
  t.teardown(() => memory.close())
  const custom: RateLimitStore = {
    kind: 'memory',
    admit: async request => await memory.admit(request),
    release: (keys, id) => memory.release(keys, id),
    renewLeases: async leases => await memory.renewLeases(leases),
    usage: async keys => await memory.usage(keys),
    resetSubject: async base => await memory.resetSubject(base),
    close: async () => {}
  }
  const policies = new PolicyManager(undefined, { store: custom })
  t.teardown(() => policies.close())
  t.throws(() => policies.usageReport({ month: '2026-12' }), { code: 'FST_MAESTRO_RL_INVALID_POLICY', message: /usageReport needs a store with usageMonth/ })
})

t.test('the memory store reports the records it holds, under its prefix only', async t => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  // The admission path fills this map; here the test does.
  const held = (store as unknown as { usageRecords: Map<string, Map<string, unknown>> }).usageRecords
  const month = new Map<string, unknown>()
  held.set('202612', month)
  for (const [prefix, id] of [['maestro-rl', 'acme'], ['maestro-rl', 'globex'], ['other', 'acme']]) {
    month.set(`${prefix}:v1:{t:${id}}:`, { scope: 'tenant', id, tier: 'starter', q: 5, quota: 10, buckets: new Map([['search', { used: 2, quota: 3 }]]) })
  }
  const policies = new PolicyManager(undefined, { store })
  t.teardown(() => policies.close())
  t.same(sorted(await collect(policies.usageReport({ month: '2026-12' }))), sorted(['acme', 'globex'].flatMap(id => expectedRows({ scope: 'tenant', id, tier: 'starter', q: 5, quota: 10, buckets: { search: { used: 2, quota: 3 } } }))))
  t.same(await collect(policies.usageReport({ month: '2026-11' })), [])
})

t.test('on a three-master Cluster: records on every master are all read', async t => {
  const cluster = await privateCluster(t)
  const client = cluster.client()
  await new Promise<void>(resolve => client.once('ready', () => resolve()))
  const prefix = 'usage-cluster'
  const records: StoredUsage[] = [...RECORDS]
  for (let i = 0; i < 300; i++) records.push({ scope: 'tenant', id: `tenant-${i}`, tier: 'starter', q: i, quota: 1000, ...(i % 7 === 0 ? { buckets: { search: { used: i % 5, quota: 5 } } } : {}) })
  // One pipeline per record: a Cluster pipeline holds one slot.
  await Promise.all(records.map(async usage => {
    const pipeline = client.pipeline()
    writeUsage(pipeline, prefix, usage, '202612')
    await pipeline.exec()
  }))

  const masters = client.nodes('master')
  t.equal(masters.length, 3)
  const held = await Promise.all(masters.map(async node => (await node.keys(`${prefix}:*usage:202612`)).length))
  t.ok(held.every(n => n > 0), `records on every master (${held.join(', ')})`)
  t.equal(held.reduce((a, b) => a + b), records.length)
  t.ok(new Set(records.map(r => keySlot(usageKey(prefix, r, '202612')))).size > 100, 'spread over many slots')

  const store = new RedisStore({ client })
  const policies = new PolicyManager(client, { keyPrefix: prefix, store })
  t.teardown(() => policies.close())
  t.same(sorted(await collect(policies.usageReport({ month: '2026-12' }))), allRows(records))
})
