// The store behaviour suite: the same tests for every store (memory, Redis, Redis Cluster).
import type { Test } from 'tap'
import { maxInAnyWindow, type Admission } from './sliding-log.js'
import { limits, type StoreUnderTest } from './stores.js'

const MINUTE = 60_000
const HOUR = 3_600_000

export type MakeStore = (t: Test, settings?: { bucketsPerWindow?: number, leaseTtlMs?: number }) => StoreUnderTest

export function conformanceSuite (t: Test, make: MakeStore): void {
  t.test('admits up to the minute limit, then rejects with the real wait', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    for (let i = 1; i <= 5; i++) {
      const d = await s.store.admit({ keys, cost: 1, limits: limits(5), leaseId: '' })
      t.equal(d.allowed, true, `request ${i} admitted`)
      t.equal(d.minute.remaining, 5 - i)
      t.equal(d.now, s.clock.now, 'the decision carries the store clock')
    }
    const rejected = await s.store.admit({ keys, cost: 1, limits: limits(5), leaseId: '' })
    t.equal(rejected.allowed, false)
    t.equal(rejected.reason, 'rate_limit_exceeded')
    t.equal(rejected.minute.remaining, 0)
    // All five sit in one 3 s bucket that stops counting once it has wholly left the window.
    const bucketEnd = Math.floor(s.clock.now / 3000) * 3000 + 3000
    t.equal(rejected.retryAfterMs, bucketEnd + MINUTE - s.clock.now)
    s.clock.now += rejected.retryAfterMs - 1
    t.equal((await s.store.admit({ keys, cost: 1, limits: limits(5), leaseId: '' })).allowed, false, 'still refused 1 ms before')
    s.clock.now += 1
    t.equal((await s.store.admit({ keys, cost: 1, limits: limits(5), leaseId: '' })).allowed, true, 'admitted at Retry-After')
  })

  t.test('a rejected request consumes nothing', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const l = limits(3, 100, 1000)
    for (let i = 0; i < 3; i++) await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })
    for (let i = 0; i < 10; i++) t.equal((await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })).allowed, false)
    s.clock.now += 2 * MINUTE
    const d = await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })
    t.equal(d.hour.remaining, 96, 'only the three admitted requests count against the hour')
    t.equal(d.month.remaining, 996, 'and against the month')
  })

  t.test('cost counts n against every window and the month', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const l = limits(10, 20, 30)
    const d = await s.store.admit({ keys, cost: 4, limits: l, leaseId: '' })
    t.same([d.minute.remaining, d.hour.remaining, d.month.remaining], [6, 16, 26])
    t.equal((await s.store.admit({ keys, cost: 7, limits: l, leaseId: '' })).allowed, false, 'a cost that does not fit is refused whole')
    t.equal((await s.store.admit({ keys, cost: 6, limits: l, leaseId: '' })).allowed, true, 'one that fits exactly is admitted')
  })

  t.test('a cost above the limit is never admitted', async t => {
    const s = make(t)
    const d = await s.store.admit({ keys: s.keys('acme'), cost: 6, limits: limits(5), leaseId: '' })
    t.equal(d.allowed, false)
    t.equal(d.retryAfterMs, MINUTE)
  })

  t.test('hour window is enforced across minutes', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const l = limits(10, 25)
    let admitted = 0
    for (let minute = 0; minute < 5; minute++) {
      for (let i = 0; i < 10; i++) if ((await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })).allowed) admitted++
      s.clock.now += MINUTE + 3000
    }
    t.equal(admitted, 25)
    const d = await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })
    t.equal(d.reason, 'rate_limit_exceeded')
    t.ok(d.retryAfterMs > 40 * MINUTE && d.retryAfterMs <= HOUR + 3 * MINUTE, `hour wait ${d.retryAfterMs}`)
  })

  t.test('monthly quota is a calendar month in UTC', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const l = limits(Infinity, Infinity, 3)
    s.clock.now = Date.UTC(2026, 10, 30, 23, 59, 0) // 30 Nov, one minute before December
    for (let i = 0; i < 3; i++) t.equal((await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })).allowed, true)
    const over = await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })
    t.equal(over.reason, 'quota_exceeded')
    t.equal(over.retryAfterMs, 60_000, 'waits until the first of December, 00:00 UTC')
    t.equal(over.month.resetAt, Date.UTC(2026, 11, 1))
    s.clock.now = Date.UTC(2026, 11, 1)
    const next = await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })
    t.equal(next.allowed, true)
    t.equal(next.month.remaining, 2, 'a new month starts from zero')
    t.equal(next.month.resetAt, Date.UTC(2027, 0, 1), 'December ends at the new year')
    s.clock.now = Date.UTC(2028, 1, 29, 12)
    t.equal((await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })).month.resetAt, Date.UTC(2028, 2, 1), 'leap February')
  })

  t.test('concurrency: leases limit in-flight requests and are given back', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const l = limits(Infinity, Infinity, Infinity, 2)
    const a = await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'a' })
    const b = await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'b' })
    t.same([a.allowed, b.allowed, b.concurrent.inFlight], [true, true, 2])
    const c = await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'c' })
    t.equal(c.reason, 'concurrent_limit_exceeded')
    t.equal(c.retryAfterMs, 1000)
    s.store.release(keys, 'a')
    s.store.release(keys, 'a') // twice is harmless
    const d = await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'd' })
    t.equal(d.allowed, true)
    t.equal(d.concurrent.inFlight, 2)
  })

  t.test('a lease never released expires by itself', async t => {
    const s = make(t, { leaseTtlMs: 5000 })
    const keys = s.keys('acme')
    const l = limits(Infinity, Infinity, Infinity, 1)
    t.equal((await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'crashed' })).allowed, true)
    s.clock.now += 4000
    const blocked = await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'x' })
    t.equal(blocked.allowed, false)
    t.equal(blocked.retryAfterMs, 1000, 'the oldest lease expires in a second')
    s.clock.now += 1000
    t.equal((await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'y' })).allowed, true, 'reclaimed after its lifetime')
  })

  t.test('buckets and tenants count apart', async t => {
    const s = make(t)
    const l = limits(1)
    t.equal((await s.store.admit({ keys: s.keys('acme'), cost: 1, limits: l, leaseId: '' })).allowed, true)
    t.equal((await s.store.admit({ keys: s.keys('acme', 'search'), cost: 1, limits: l, leaseId: '' })).allowed, true)
    t.equal((await s.store.admit({ keys: s.keys('globex'), cost: 1, limits: l, leaseId: '' })).allowed, true)
    t.equal((await s.store.admit({ keys: s.keys('acme'), cost: 1, limits: l, leaseId: '' })).allowed, false)
  })

  t.test('adversarial traces never put more than the limit in any window', async t => {
    const traces: Record<string, number[]> = {
      // A full burst at the very end of a bucket, then a steady drip (the fixed-window killer).
      'edge burst then drip': [...Array(10).fill(2999), ...Array.from({ length: 200 }, (_, i) => 3000 + i * 700)],
      // Bursts exactly at every bucket edge.
      'edge bursts': Array.from({ length: 300 }, (_, i) => Math.floor(i / 10) * 3000 + (i % 10 < 5 ? 2999 : 3000)),
      steady: Array.from({ length: 400 }, (_, i) => i * 500),
      random: randomTrace(600, 5 * MINUTE, 42)
    }
    for (const [name, offsets] of Object.entries(traces)) {
      const s = make(t)
      const start = s.clock.now - (s.clock.now % 3000)
      const admitted: Admission[] = []
      for (const offset of offsets) {
        s.clock.now = start + offset
        if ((await s.store.admit({ keys: s.keys('acme'), cost: 1, limits: limits(10), leaseId: '' })).allowed) admitted.push({ at: s.clock.now, cost: 1 })
      }
      t.ok(maxInAnyWindow(admitted, MINUTE) <= 10, `${name}: at most 10 in any 60 s span (max ${maxInAnyWindow(admitted, MINUTE)})`)
      t.ok(admitted.length >= 10, `${name}: admits traffic (${admitted.length})`)
    }
  })
}

/** Sorted pseudo-random offsets in [0, span) (deterministic for a seed). */
export function randomTrace (count: number, span: number, seed: number): number[] {
  let x = seed
  const out: number[] = []
  for (let i = 0; i < count; i++) {
    x = (x * 1103515245 + 12345) % 2147483648
    out.push(Math.floor((x / 2147483648) * span))
  }
  return out.sort((a, b) => a - b)
}
