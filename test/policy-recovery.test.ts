// A policy store that restarts empty, is flushed or is rewritten behind the instances' backs is
// followed by every running instance within a second, and no entry can pin itself with a version.
import { Redis, type RedisOptions } from 'ioredis'
import t from 'tap'
import { buildApp, headerTenant } from './helpers/app.js'
import { privateRedis, sharedRedis, uniquePrefix } from './helpers/redis.js'
import { within } from './helpers/wait.js'

type App = Awaited<ReturnType<typeof buildApp>>
interface Teardown { teardown (fn: () => unknown): void }

const status = async (app: App, tenant: string): Promise<number> =>
  (await app.inject({ url: '/', headers: { 'x-tenant': tenant, 'x-tier': 'starter' } })).statusCode
const minuteLimit = async (app: App, tenant: string): Promise<string | undefined> =>
  (await app.inject({ url: '/', headers: { 'x-tenant': tenant, 'x-tier': 'starter' } })).headers['x-ratelimit-limit-minute'] as string | undefined

/** Two instances on one Redis, with a history: acme has an override, and was blocked then unblocked. */
async function twoInstancesWithHistory (t: Teardown, redisUrl: string, keyPrefix: string, policyReloadSeconds = 3600, clientOptions: RedisOptions = {}): Promise<[App, App]> {
  const app = async (): Promise<App> => {
    const redis = new Redis(redisUrl, clientOptions)
    redis.on('error', () => {})
    t.teardown(() => redis.disconnect())
    return await buildApp(t, { kind: 'memory', keyPrefix, options: { redis, tenantExtractor: headerTenant, policyReloadSeconds } })
  }
  const a = await app()
  const b = await app()
  await a.policies.setTenantOverride('acme', { requestsPerMinute: 250 })
  await a.policies.block('acme')
  await a.policies.unblock('acme')
  if (await within(1000, async () => await minuteLimit(b, 'acme') === '250' && await status(b, 'acme') === 200) === Infinity) throw new Error('b never caught up')
  return [a, b]
}

t.test('an empty restart: running instances drop what was lost and follow new changes within a second', async t => {
  const server = await privateRedis(t)
  const probe = new Redis(server.url, { lazyConnect: true })
  probe.on('error', () => {})
  t.teardown(() => probe.disconnect())
  const keyPrefix = uniquePrefix(t)
  const [a, b] = await twoInstancesWithHistory(t, server.url, keyPrefix)

  await server.restart()
  await probe.connect()
  // Both subscribers are back on the empty server.
  const channel = `${keyPrefix}:v1:policies`
  t.ok(await within(10_000, async () => (await probe.pubsub('NUMSUB', channel))[1] === 2) < 10_000, 'both instances resubscribed')
  // Read from the policies, not from a response's headers: right after a restart the store itself may
  // still be reconnecting (its breaker open), and a decision without Redis carries no limit headers.
  const droppedMs = await within(1000, async () => await b.policies.getTenantOverride('acme') === null)
  t.ok(droppedMs < 1000, `the override lost with the data is dropped (${droppedMs} ms after resubscribing)`)

  await a.policies.block('acme', { reason: 'after the restart' })
  t.equal(await probe.hget(`${keyPrefix}:v1:{policies}`, '__version'), '1', 'Redis counts versions from 1 again')
  t.equal(await status(a, 'acme'), 403, 'the writer applies its own block')
  const blockMs = await within(1000, async () => await status(b, 'acme') === 403)
  t.ok(blockMs < 1000, `the other instance follows the block (${blockMs} ms)`)
})

t.test('an empty restart, with clients that queue nothing while away: the reload waits for the client that reads', async t => {
  const server = await privateRedis(t)
  const probe = new Redis(server.url, { lazyConnect: true })
  probe.on('error', () => {})
  t.teardown(() => probe.disconnect())
  const keyPrefix = uniquePrefix(t)
  // A reload when the subscriber is back fails at once if this client is not back yet.
  const [, b] = await twoInstancesWithHistory(t, server.url, keyPrefix, 3600, { enableOfflineQueue: false })
  await server.restart()
  await probe.connect()
  t.ok(await within(10_000, async () => (await probe.pubsub('NUMSUB', `${keyPrefix}:v1:policies`))[1] === 2) < 10_000, 'both instances resubscribed')
  const droppedMs = await within(5000, async () => await b.policies.getTenantOverride('acme') === null)
  t.ok(droppedMs < 5000, `the override lost with the data is dropped once the client is back too (${droppedMs} ms after resubscribing)`)
})

t.test('FLUSHALL without a reconnect: the next change makes every instance reload', async t => {
  const server = await privateRedis(t)
  const probe = new Redis(server.url)
  t.teardown(() => probe.disconnect())
  const [a, b] = await twoInstancesWithHistory(t, server.url, uniquePrefix(t))

  await probe.flushall()
  await a.policies.block('acme')
  t.equal(await status(a, 'acme'), 403, 'the writer applies its own block')
  const blockMs = await within(1000, async () => await status(b, 'acme') === 403)
  t.ok(blockMs < 1000, `the other instance follows the block (${blockMs} ms)`)
  t.equal(await minuteLimit(a, 'acme'), undefined, 'blocked: no limit headers')
  await a.policies.unblock('acme')
  t.ok(await within(1000, async () => await minuteLimit(b, 'acme') === '10') < 1000, 'and dropped the override the flush removed')
  t.equal(await minuteLimit(a, 'acme'), '10', 'so did the writer')
})

t.test('FLUSHALL and no change at all: the periodic reload replaces the state', async t => {
  const server = await privateRedis(t)
  const probe = new Redis(server.url)
  t.teardown(() => probe.disconnect())
  const [, b] = await twoInstancesWithHistory(t, server.url, uniquePrefix(t), 1)

  await probe.flushall()
  const ms = await within(2500, async () => await minuteLimit(b, 'acme') === '10')
  t.ok(ms < 2500, `the override is gone after ${ms} ms (reload every second)`)
})

t.test('an entry stored with a huge version does not outlive its removal', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  const options = { tenantExtractor: headerTenant, policyReloadSeconds: 3600 }
  const a = await buildApp(t, { kind: 'redis', keyPrefix, options })
  const b = await buildApp(t, { kind: 'redis', keyPrefix, options })
  // Written by a tool straight into the hash, at a version far above the hash's own.
  await redis.hset(`${keyPrefix}:v1:{policies}`, 'block:acme', JSON.stringify({ v: 999_999_999, expiresAt: null, value: { reason: 'tool' } }))
  await a.policies.reload()
  await b.policies.reload()
  t.equal(await status(b, 'acme'), 403, 'the stored block applies')

  t.equal(await a.policies.unblock('acme'), true)
  t.equal(await status(a, 'acme'), 200, 'the writer is unblocked at once')
  const ms = await within(1000, async () => await status(b, 'acme') === 200)
  t.ok(ms < 1000, `the other instance after ${ms} ms`)
  await b.policies.reload()
  t.equal(await status(b, 'acme'), 200, 'and a reload agrees')

  await a.policies.block('acme', { reason: 'again' })
  t.ok(await within(1000, async () => await status(b, 'acme') === 403) < 1000, 'a later block applies everywhere too')
  const stored = JSON.parse(await redis.hget(`${keyPrefix}:v1:{policies}`, 'block:acme') as string) as { v: number }
  t.ok(stored.v > 999_999_999, `versions carry on above the stored one (${stored.v})`)
})

t.test('a forged notice with a huge version blocks nobody for long', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  const channel = `${keyPrefix}:v1:policies`
  const options = { tenantExtractor: headerTenant, policyReloadSeconds: 3600 }
  const a = await buildApp(t, { kind: 'redis', keyPrefix, options })
  const b = await buildApp(t, { kind: 'redis', keyPrefix, options })
  const forge = async (tenant: string): Promise<void> => {
    const v = 999_999_999
    await redis.publish(channel, JSON.stringify({ v, field: `block:${tenant}`, entry: { v, expiresAt: null, value: { reason: 'forged' } } }))
  }

  t.test('followed by nothing', async t => {
    await forge('acme')
    // A real change sent after the forged notice: once b has it, b has read the forged one too.
    await a.policies.setTenantOverride('marker', { requestsPerMinute: 77 })
    t.ok(await within(1000, async () => await minuteLimit(b, 'marker') === '77') < 1000, 'b read past the forged notice')
    const ms = await within(1000, async () => await status(b, 'acme') === 200)
    t.ok(ms < 1000, `acme is not blocked ${ms} ms later`)
    await b.policies.reload()
    t.equal(await status(b, 'acme'), 200, 'nor after a reload')
  })

  t.test('followed by an unblock', async t => {
    await forge('beta')
    await a.policies.block('marker2')
    t.ok(await within(1000, async () => await status(b, 'marker2') === 403) < 1000, 'b read past the forged notice')
    await a.policies.unblock('beta')
    const ms = await within(1000, async () => await status(a, 'beta') === 200 && await status(b, 'beta') === 200)
    t.ok(ms < 1000, `beta is unblocked everywhere after ${ms} ms`)
  })
})
