// One behaviour suite, run against both stores: the memory store must answer exactly as the Lua script.
import t from 'tap'
import { limits, makeStore, STORE_KINDS } from './helpers/stores.js'
import { conformanceSuite, randomTrace } from './helpers/conformance.js'
import { adjustmentSuite } from './helpers/adjust-suite.js'

const HOUR = 3_600_000

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => { conformanceSuite(t, (t, settings) => makeStore(t, kind, settings)) })
  t.test(`${kind} store: peek, settle, refund`, async t => { adjustmentSuite(t, (t, settings) => makeStore(t, kind, settings)) })
}

// Tier changes (a window unlimited for some requests, limited for others) are part of the traces.
const TIERS = [limits(7, 40, 120, 3), limits(Infinity, 30, 100, 2), limits(5, Infinity, Infinity, Infinity), limits(9, 50, Infinity, 4)]

// Buckets: the month is the tenant's across all of them; 'export' sometimes caps its own month.
const VARIANTS = [
  { name: 'one tier', tiers: TIERS.slice(0, 1), buckets: false },
  { name: 'tiers changing between requests', tiers: TIERS, buckets: false },
  { name: 'buckets, one with a monthly cap of its own', tiers: TIERS, buckets: true }
]

for (const { name, tiers, buckets } of VARIANTS) {
  t.test(`the memory store answers exactly as the Lua script on random traces (${name})`, async t => {
    const mem = makeStore(t, 'memory', { leaseTtlMs: 10_000 })
    const red = makeStore(t, 'redis', { leaseTtlMs: 10_000 })
    const times = randomTrace(400, 3 * HOUR, 7)
    let rng = 99
    const next = (): number => { rng = (rng * 1103515245 + 12345) % 2147483648; return rng / 2147483648 }
    mem.clock.now = red.clock.now = Date.UTC(2026, 10, 30, 22, 0, 0) // crosses into December
    const start = mem.clock.now
    let compared = 0
    let bucketCapShown = 0
    const reasons = new Set<string>()
    const mismatches: string[] = []
    for (const [i, offset] of times.entries()) {
      mem.clock.now = red.clock.now = start + offset
      const cost = next() < 0.2 ? 3 : 1
      const id = next() < 0.3 ? 'globex' : 'acme'
      const l = tiers[Math.floor(next() * tiers.length)]
      const draw = next()
      const bucket = !buckets || draw < 0.4 ? undefined : draw < 0.7 ? 'search' : 'export'
      const bucketQuota = bucket === 'export' && next() < 0.7 ? 2 : undefined
      const [a, b] = await Promise.all([
        mem.store.admit({ keys: mem.keys(id, bucket), cost, limits: l, leaseId: 'l' + i, bucketQuota }),
        red.store.admit({ keys: red.keys(id, bucket), cost, limits: l, leaseId: 'l' + i, bucketQuota })
      ])
      if (next() < 0.6) { mem.store.release(mem.keys(id, bucket), 'l' + i); red.store.release(red.keys(id, bucket), 'l' + i) }
      if (JSON.stringify(a) !== JSON.stringify(b)) mismatches.push(`#${i}: memory ${JSON.stringify(a)} redis ${JSON.stringify(b)}`)
      if (a.reason !== undefined) reasons.add(a.reason)
      if (a.month.limit === 2) bucketCapShown++
      compared++
    }
    t.equal(compared, times.length)
    t.ok(reasons.has('rate_limit_exceeded'), `the trace reaches the windows (${[...reasons].join(', ')})`)
    if (buckets) {
      t.ok(reasons.has('quota_exceeded'), 'and the month')
      t.ok(bucketCapShown > 0, `a bucket's own cap binds and is the month shown (${bucketCapShown} decisions)`)
    }
    t.same(mismatches, [], `all ${compared} decisions identical`)
  })
}

t.test('the memory store forgets expired entries', async t => {
  const s = makeStore(t, 'memory', { leaseTtlMs: 1000 })
  const store = s.store as import('../dist/index.js').MemoryStore
  await store.admit({ keys: s.keys('a'), cost: 1, limits: limits(5), leaseId: '' })
  await store.admit({ keys: s.keys('b'), cost: 1, limits: limits(Infinity, Infinity, Infinity, 3), leaseId: 'x' })
  t.equal(store.size, 2)
  s.clock.now += 2000
  store.sweep()
  t.equal(store.size, 1, 'the expired lease set is gone')
  s.clock.now += 64_000
  store.sweep()
  t.equal(store.size, 0, 'and the minute counters once their last bucket left the window')
})
