// One behaviour suite, run against both stores: the memory store must answer exactly as the Lua script.
import t from 'tap'
import { limits, makeStore, STORE_KINDS } from './helpers/stores.js'
import { conformanceSuite, randomTrace } from './helpers/conformance.js'

const HOUR = 3_600_000

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => { conformanceSuite(t, (t, settings) => makeStore(t, kind, settings)) })
}

// Tier changes (a window unlimited for some requests, limited for others) are part of the traces.
const TIERS = [limits(7, 40, 120, 3), limits(Infinity, 30, 100, 2), limits(5, Infinity, Infinity, Infinity), limits(9, 50, Infinity, 4)]

for (const [name, tiers] of [['one tier', TIERS.slice(0, 1)], ['tiers changing between requests', TIERS]] as const) {
  t.test(`the memory store answers exactly as the Lua script on random traces (${name})`, async t => {
    const mem = makeStore(t, 'memory', { leaseTtlMs: 10_000 })
    const red = makeStore(t, 'redis', { leaseTtlMs: 10_000 })
    const times = randomTrace(400, 3 * HOUR, 7)
    let rng = 99
    const next = (): number => { rng = (rng * 1103515245 + 12345) % 2147483648; return rng / 2147483648 }
    mem.clock.now = red.clock.now = Date.UTC(2026, 10, 30, 22, 0, 0) // crosses into December
    const start = mem.clock.now
    let compared = 0
    const mismatches: string[] = []
    for (const [i, offset] of times.entries()) {
      mem.clock.now = red.clock.now = start + offset
      const cost = next() < 0.2 ? 3 : 1
      const id = next() < 0.3 ? 'globex' : 'acme'
      const l = tiers[Math.floor(next() * tiers.length)]
      const [a, b] = await Promise.all([
        mem.store.admit({ keys: mem.keys(id), cost, limits: l, leaseId: 'l' + i }),
        red.store.admit({ keys: red.keys(id), cost, limits: l, leaseId: 'l' + i })
      ])
      if (next() < 0.6) { mem.store.release(mem.keys(id), 'l' + i); red.store.release(red.keys(id), 'l' + i) }
      if (JSON.stringify(a) !== JSON.stringify(b)) mismatches.push(`#${i}: memory ${JSON.stringify(a)} redis ${JSON.stringify(b)}`)
      compared++
    }
    t.equal(compared, times.length)
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
