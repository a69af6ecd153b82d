// How the Redis store groups admissions into calls of the batch script: bounded calls, one clock per
// call, a call that fails as a whole, and the Cluster rule of one item per call.
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { RedisStore } from '../dist/index.js'
import { storeKeys } from '../dist/keys.js'
import { commandCalls, privateRedis } from './helpers/redis.js'
import { limits } from './helpers/stores.js'

const OPEN = limits(1_000_000, 1_000_000, 1_000_000, 1_000)

async function storeOnPrivateRedis (t: Test, options: { clock?: () => number, pipeline?: boolean } = {}): Promise<{ store: RedisStore, client: Redis, server: Awaited<ReturnType<typeof privateRedis>> }> {
  const server = await privateRedis(t)
  const client = new Redis(server.url, { maxRetriesPerRequest: 1 })
  client.on('error', () => {})
  t.teardown(() => client.disconnect())
  const store = new RedisStore({ client, ...options })
  t.teardown(() => store.close())
  await store.admit({ keys: storeKeys('p', 'tenant', 'warm', undefined), cost: 1, limits: OPEN, leaseId: '' }) // loads the script
  await client.config('RESETSTAT')
  return { store, client, server }
}

t.test('one turn of 300 admissions goes out as three bounded calls, and every one is answered', async t => {
  const { store, client } = await storeOnPrivateRedis(t)
  const decisions = await Promise.all(Array.from({ length: 300 }, async (_, i) =>
    await store.admit({ keys: storeKeys('p', 'tenant', `t${i % 7}`, undefined), cost: 1, limits: OPEN, leaseId: '' })))
  t.ok(decisions.every(d => d.allowed), 'all admitted')
  t.equal((await commandCalls(client)).evalsha, 3, '128 + 128 + 44 items')
  // Items of one tenant are decided one after another, in the order they were asked for.
  const used = decisions.filter((_, i) => i % 7 === 0).map(d => OPEN.requestsPerMinute - d.minute.remaining)
  t.same(used, used.map((_, i) => i + 1), 'tenant t0 counted 1, 2, 3… in order')
})

t.test('a call holds items of one clock: a change of clock within a turn starts another call', async t => {
  let now = Date.UTC(2031, 0, 15, 12, 0, 0)
  const { store, client } = await storeOnPrivateRedis(t, { clock: () => now })
  const keys = storeKeys('p', 'tenant', 'acme', undefined)
  const first = store.admit({ keys, cost: 1, limits: OPEN, leaseId: '' })
  const second = store.admit({ keys, cost: 1, limits: OPEN, leaseId: '' })
  now += 64_000 // over a minute later (the oldest bucket has wholly left), in the same turn
  const third = store.admit({ keys, cost: 1, limits: OPEN, leaseId: '' })
  const [a, b, c] = await Promise.all([first, second, third])
  t.equal((await commandCalls(client)).evalsha, 2, 'two calls: one per clock')
  t.same([a.now, b.now, c.now], [now - 64_000, now - 64_000, now], 'each decided on its own clock')
  t.equal(OPEN.requestsPerMinute - c.minute.remaining, 1, 'the later item sees a new minute window')
})

t.test('a call that fails as a whole fails every item in it, and their releases wait for Redis', async t => {
  const { store, client } = await storeOnPrivateRedis(t)
  const keys = storeKeys('p', 'tenant', 'acme', undefined)
  t.ok((await store.admit({ keys, cost: 1, limits: OPEN, leaseId: 'held' })).allowed)
  await client.acl('SETUSER', 'default', '-evalsha', '-eval') // Redis refuses the next call outright
  store.release(keys, 'held') // rides along with the next admission of acme
  const settled = await Promise.allSettled([
    store.admit({ keys, cost: 1, limits: OPEN, leaseId: 'a' }),
    store.admit({ keys: storeKeys('p', 'tenant', 'globex', undefined), cost: 1, limits: OPEN, leaseId: 'b' })
  ])
  t.same(settled.map(r => r.status), ['rejected', 'rejected'], 'both items of the refused call fail')
  t.match((settled[0] as PromiseRejectedResult).reason, { message: /NOPERM/ })
  t.equal(store.pendingReleaseCount, 1, 'the release that rode along is kept for later')
  await client.acl('SETUSER', 'default', '+@all')
  t.ok((await store.admit({ keys, cost: 1, limits: OPEN, leaseId: 'c' })).allowed, 'Redis answers again')
  await new Promise(resolve => setTimeout(resolve, 20))
  t.equal(store.pendingReleaseCount, 0, 'and the kept release went out')
  t.notOk(await client.hexists(keys.leases, 'held'), 'the held lease is given back')
})

t.test('with pipeline: false every admission is a call of its own (for proxies that check slots)', async t => {
  const { store, client } = await storeOnPrivateRedis(t, { pipeline: false })
  await Promise.all(Array.from({ length: 5 }, async (_, i) =>
    await store.admit({ keys: storeKeys('p', 'tenant', `t${i}`, undefined), cost: 1, limits: OPEN, leaseId: '' })))
  t.equal((await commandCalls(client)).evalsha, 5)
})

t.test('a sink that throws leaves no other item of its batch unanswered; its error surfaces alone', async t => {
  const { store } = await storeOnPrivateRedis(t)
  const surfaced: unknown[] = []
  const listeners = process.listeners('uncaughtException')
  process.removeAllListeners('uncaughtException')
  process.on('uncaughtException', err => surfaced.push(err))
  t.teardown(() => {
    process.removeAllListeners('uncaughtException')
    for (const listener of listeners) process.on('uncaughtException', listener)
  })
  const keys = storeKeys('p', 'tenant', 'sinks', undefined)
  const answered = new Promise<boolean>(resolve => {
    store.admitTo({ keys, cost: 1, limits: OPEN, leaseId: '' }, { decided: () => { throw new Error('sink broke') }, failed: () => {} })
    store.admitTo({ keys, cost: 1, limits: OPEN, leaseId: '' }, { decided: d => resolve(d.allowed), failed: () => resolve(false) })
  })
  t.equal(await answered, true, 'the second item of the same call is answered')
  await new Promise(resolve => setImmediate(resolve))
  t.equal(surfaced.length, 1)
  t.match(surfaced[0], { message: 'sink broke' })
})

t.test('the adjustments of one turn go out as one call, each answered on its own', async t => {
  const { store, client } = await storeOnPrivateRedis(t)
  const keys = Array.from({ length: 5 }, (_, i) => storeKeys('p', 'tenant', `s${i}`, undefined))
  const reserved = await Promise.all(keys.map(async k => await store.admit({ keys: k, cost: 10, limits: OPEN, leaseId: '' })))
  await store.adjust({ keys: keys[0], amount: 1, reservedAt: reserved[0].now, counted: { minute: true, hour: true, month: true, bucketMonth: false } }) // loads the script
  await client.config('RESETSTAT')
  const counted = { minute: true, hour: true, month: true, bucketMonth: false }
  const changes = await Promise.all(keys.map(async (k, i) => await store.adjust({ keys: k, amount: i - 2, reservedAt: reserved[i].now, counted })))
  t.same(changes.map(c => c.minute), [-2, -1, 0, 1, 2], 'each its own change')
  t.equal((await commandCalls(client)).evalsha, 1, 'one call for the turn')
  const used = await Promise.all(keys.map(async k => (await store.usage(k)).minute))
  t.same(used, [9, 9, 10, 11, 12])
})

t.test('charges of one turn to one reservation go as one item, each answered with its own amount', async t => {
  const { store, client } = await storeOnPrivateRedis(t)
  const keys = storeKeys('p', 'tenant', 'busy', undefined)
  const reserved = await store.admit({ keys, cost: 1, limits: OPEN, leaseId: '' })
  const counted = { minute: true, hour: true, month: true, bucketMonth: false }
  await store.adjust({ keys, amount: 1, reservedAt: reserved.now, counted }) // loads the script
  await client.config('RESETSTAT')
  const changes = await Promise.all([3, 1, 4, 1, 5].map(async amount => await store.adjust({ keys, amount, reservedAt: reserved.now, counted })))
  t.same(changes.map(c => [c.minute, c.hour, c.month]), [[3, 3, 3], [1, 1, 1], [4, 4, 4], [1, 1, 1], [5, 5, 5]])
  const calls = await commandCalls(client)
  t.equal(calls.evalsha, 1)
  t.equal(calls.hincrby, 5, 'one change of each count (bucket and sum of two windows, the month): the 5 charges merged')
  t.equal((await store.usage(keys)).minute, 1 + 1 + 14)
  const missing = storeKeys('p', 'tenant', 'nobody', undefined)
  const none = await Promise.all([2, 3].map(async amount => await store.adjust({ keys: missing, amount, reservedAt: reserved.now, counted })))
  t.same(none.map(c => c.minute), [0, 0], 'no bucket to charge: nothing, for each')
})

t.test('a refund between two charges of one turn keeps its place: the outcome of the three in order', async t => {
  const { store } = await storeOnPrivateRedis(t)
  const keys = storeKeys('p', 'tenant', 'mixed', undefined)
  const reserved = await store.admit({ keys, cost: 1, limits: OPEN, leaseId: '' })
  const counted = { minute: true, hour: false, month: false, bucketMonth: false }
  const changes = await Promise.all([2, -3, 2].map(async amount => await store.adjust({ keys, amount, reservedAt: reserved.now, counted })))
  t.same(changes.map(c => c.minute), [2, -3, 2], '1 + 2 = 3, less 3 = 0, plus 2')
  t.equal((await store.usage(keys)).minute, 2)
})
