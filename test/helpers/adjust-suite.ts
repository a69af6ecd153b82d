// Peeking and changing counts after the fact (settle, refund): the same tests for every store
// (memory, Redis, Redis Cluster), so the Lua script and its memory mirror answer alike.
import type { Test } from 'tap'
import type { CountedIn } from '../../dist/index.js'
import type { MakeStore } from './conformance.js'
import { limits } from './stores.js'

const MINUTE = 60_000
const ALL: CountedIn = { minute: true, hour: true, month: true, bucketMonth: false }

export function adjustmentSuite (t: Test, make: MakeStore): void {
  t.test('peek: the decision an admission would get, with nothing recorded and no lease taken', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const l = limits(3, 100, 1000, 1)
    const peeked = await s.store.admit({ keys, cost: 2, limits: l, leaseId: 'p1', peek: true })
    t.equal(peeked.allowed, true)
    t.equal(peeked.minute.remaining, 1, 'as if the 2 were counted')
    t.equal(peeked.month.remaining, 998)
    t.equal(peeked.concurrent.inFlight, 1, 'as if its lease were taken')
    const usage = await s.store.usage(keys)
    t.same([usage.minute, usage.hour, usage.month, usage.inFlight], [0, 0, 0, 0], 'nothing recorded')
    await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'held' })
    const atConcurrency = await s.store.admit({ keys, cost: 1, limits: l, leaseId: 'p2', peek: true })
    t.equal(atConcurrency.reason, 'concurrent_limit_exceeded', 'a held lease counts')
    const overWindow = await s.store.admit({ keys, cost: 3, limits: limits(3), leaseId: '', peek: true })
    t.equal(overWindow.reason, 'rate_limit_exceeded', 'and so does the window')
    t.equal((await s.store.usage(keys)).minute, 1, 'peeks changed nothing')
  })

  t.test('a refund gives back the newest buckets first, never below zero', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const l = limits(10, 100, 1000)
    await s.store.admit({ keys, cost: 3, limits: l, leaseId: '' })
    s.clock.now += 10_000
    await s.store.admit({ keys, cost: 2, limits: l, leaseId: '' })
    const refunded = await s.store.adjust!({ keys, amount: -4, counted: ALL })
    t.same([refunded.minute, refunded.hour, refunded.month], [-4, -4, -4])
    t.same(await used(s, keys), [1, 1, 1])
    // The older bucket kept 1: it leaves the window with the first admission's bucket.
    s.clock.now += MINUTE - 10_000 + 3000
    t.equal((await s.store.usage(keys)).minute, 0, 'what is left leaves with the oldest bucket')
    const tooMuch = await s.store.adjust!({ keys, amount: -10, counted: ALL })
    t.same([tooMuch.minute, tooMuch.hour, tooMuch.month], [0, -1, -1], 'only what is still counted comes back')
    t.same(await used(s, keys), [0, 0, 0])
    t.same((await s.store.adjust!({ keys, amount: -5, counted: ALL })).hour, 0, 'nothing below zero')
  })

  t.test('a settle charges or gives back in the buckets that held the reservation', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const l = limits(5, 100, 1000)
    const reserved = await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })
    s.clock.now += 10_000
    await s.store.admit({ keys, cost: 3, limits: l, leaseId: '' })
    const back = await s.store.adjust!({ keys, amount: -1, reservedAt: reserved.now, counted: ALL })
    t.same([back.minute, back.hour, back.month], [-1, -1, -1], 'the whole reservation back')
    t.same(await used(s, keys), [3, 3, 3])
    const again = await s.store.adjust!({ keys, amount: -1, reservedAt: reserved.now, counted: { minute: true, hour: false, month: false, bucketMonth: false } })
    t.equal(again.minute, 0, 'its minute bucket is empty: the later bucket is not touched')

    const charged = await s.store.adjust!({ keys, amount: 4, reservedAt: reserved.now, counted: ALL })
    t.same([charged.minute, charged.hour, charged.month], [4, 4, 4])
    t.same(await used(s, keys), [7, 7, 7], 'a charge may take the window past its limit')
    const refused = await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })
    t.equal(refused.allowed, false, 'refused while the debt counts')
    t.equal(refused.minute.remaining, 0)
    // 3 of 7 must leave to fit one more under 5: the reservation's bucket (4) leaves first.
    const bucketEnd = Math.floor(reserved.now / 3000) * 3000 + 3000
    t.equal(refused.retryAfterMs, bucketEnd + MINUTE - s.clock.now, 'Retry-After: when the debt has left')
    s.clock.now += refused.retryAfterMs
    t.equal((await s.store.admit({ keys, cost: 1, limits: l, leaseId: '' })).allowed, true, 'admitted once it has')
  })

  t.test('a settle after the reservation left a window changes that window no more', async t => {
    const s = make(t)
    const keys = s.keys('acme')
    const reserved = await s.store.admit({ keys, cost: 2, limits: limits(10, 100, 1000), leaseId: '' })
    s.clock.now += 2 * MINUTE
    const settled = await s.store.adjust!({ keys, amount: -2, reservedAt: reserved.now, counted: ALL })
    t.same([settled.minute, settled.hour, settled.month], [0, -2, -2])
    const late = await s.store.adjust!({ keys, amount: 5, reservedAt: reserved.now, counted: ALL })
    t.same([late.minute, late.hour], [0, 5], 'nor is charged there')
  })

  t.test('a settle in a month that has ended leaves the new month alone', async t => {
    const s = make(t)
    s.clock.now = Date.UTC(2026, 10, 30, 23, 59, 30)
    const keys = s.keys('acme')
    const reserved = await s.store.admit({ keys, cost: 2, limits: limits(10, 100, 1000), leaseId: '' })
    s.clock.now = Date.UTC(2026, 11, 1, 0, 0, 10)
    await s.store.admit({ keys, cost: 1, limits: limits(10, 100, 1000), leaseId: '' })
    const settled = await s.store.adjust!({ keys, amount: -2, reservedAt: reserved.now, counted: ALL })
    t.equal(settled.month, 0)
    t.equal(settled.minute, -2, 'the minute still held it')
    t.equal((await s.store.usage(keys)).month, 1)
  })

  t.test('a reservation of 0 counted in a month alone: a settle charges that month', async t => {
    const s = make(t)
    const MONTH_ONLY: CountedIn = { minute: false, hour: false, month: true, bucketMonth: false }
    const keys = s.keys('acme')
    const reserved = await s.store.admit({ keys, cost: 0, limits: limits(Infinity, Infinity, 10), leaseId: '' })
    s.clock.now += 1000
    const charged = await s.store.adjust!({ keys, amount: 4, reservedAt: reserved.now, counted: MONTH_ONLY })
    t.equal(charged.month, 4)
    t.equal((await s.store.usage(keys)).month, 4, 'the month holds the settled cost')

    const bucket = s.keys('acme', 'export')
    const capped = await s.store.admit({ keys: bucket, cost: 0, limits: limits(Infinity), leaseId: '', bucketQuota: 5 })
    s.clock.now += 1000
    const onCap = await s.store.adjust!({ keys: bucket, amount: 3, reservedAt: capped.now, counted: { ...MONTH_ONLY, month: false, bucketMonth: true } })
    t.equal(onCap.bucketMonth, 3)
    const next = await s.store.admit({ keys: bucket, cost: 3, limits: limits(Infinity), leaseId: '', bucketQuota: 5, peek: true })
    t.equal(next.reason, 'quota_exceeded', 'the bucket cap holds the settled cost')
  })

  t.test('only the counts named change; a bucket\'s own month cap with its bucket', async t => {
    const s = make(t)
    const keys = s.keys('acme', 'export')
    const l = limits(10, 100, 1000)
    const reserved = await s.store.admit({ keys, cost: 2, limits: l, leaseId: '', bucketQuota: 5 })
    t.equal(reserved.month.remaining, 3, 'the bucket cap is the tighter month')
    const minuteOnly = await s.store.adjust!({ keys, amount: -1, reservedAt: reserved.now, counted: { minute: true, hour: false, month: false, bucketMonth: false } })
    t.same([minuteOnly.minute, minuteOnly.hour, minuteOnly.month, minuteOnly.bucketMonth], [-1, 0, 0, 0])
    const months = await s.store.adjust!({ keys, amount: -2, reservedAt: reserved.now, counted: { minute: false, hour: false, month: true, bucketMonth: true } })
    t.same([months.month, months.bucketMonth], [-2, -2], 'the subject\'s month and the bucket\'s cap')
    const after = await s.store.admit({ keys, cost: 5, limits: l, leaseId: '', bucketQuota: 5 })
    t.equal(after.allowed, true, 'the cap has room for 5 again')
  })
}

async function used (s: ReturnType<MakeStore>, keys: ReturnType<ReturnType<MakeStore>['keys']>): Promise<number[]> {
  const usage = await s.store.usage(keys)
  return [usage.minute, usage.hour, usage.month]
}
