// The IETF RateLimit-Policy / RateLimit fields under draft-10 and draft-11, end to end through
// Fastify on both stores, at a clock the test sets so every value is known exactly.
import t, { type Test } from 'tap'
import Fastify, { type FastifyInstance } from 'fastify'
import rateLimiting, { MemoryStore, RedisStore, type RateLimitingOptions, type RateLimitStore } from '../dist/index.js'
import { headerTenant } from './helpers/app.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'
import { STORE_KINDS, type StoreKind } from './helpers/stores.js'

// 10 May 2026, 12:00:00 UTC: on a boundary of every sub-bucket (3 s for the minute, 180 s for the
// hour, at the default 20 per window), 21.5 days before the month ends.
const T0 = Date.UTC(2026, 4, 10, 12)
const MONTH_LEFT = 21.5 * 86_400
const MAY = 31 * 86_400
const POLICY = `"minute";q=3;w=60, "hour";q=5;w=3600, "month";q=100;w=${MAY}`
const TIERS = { multi: { requestsPerMinute: 3, requestsPerHour: 5, concurrentRequests: 1, monthlyQuota: 100 } }
const TENANT = { 'x-tenant': 'acme', 'x-tier': 'multi' }

interface Clock { now: number }

function storeFor (t: Test, kind: StoreKind, clock: Clock): RateLimitStore {
  const read = (): number => clock.now
  // Leases outlive the 70 s a held request runs below.
  const leaseTtlMs = 3_600_000
  if (kind === 'memory') return new MemoryStore({ clock: read, leaseTtlMs })
  const store = new RedisStore({ client: sharedRedis(t), clock: read, leaseTtlMs })
  t.teardown(() => store.close())
  return store
}

/** An app on a store at `clock`, with `/` and `/hold` (answers when `release` is called). */
async function appAt (t: Test, kind: StoreKind, clock: Clock, ietfHeaders: RateLimitingOptions['ietfHeaders']): Promise<{ app: FastifyInstance, release: () => void }> {
  const app = Fastify()
  t.teardown(() => app.close())
  let release = (): void => {}
  const held = new Promise<void>(resolve => { release = resolve })
  await app.register(rateLimiting, {
    store: storeFor(t, kind, clock),
    keyPrefix: uniquePrefix(t),
    tenantExtractor: headerTenant,
    tiers: TIERS,
    ietfHeaders
  })
  app.get('/', async () => ({ ok: true }))
  app.get('/hold', async () => { await held; return { ok: true } })
  await app.ready()
  return { app, release }
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    for (const draft of ['draft-10', 'draft-11'] as const) {
      t.test(`${draft}: after some requests and at a 429, three windows`, async t => {
        const clock = { now: T0 }
        const { app } = await appAt(t, kind, clock, draft)
        const first = await app.inject({ url: '/', headers: TENANT })
        t.equal(first.headers['ratelimit-policy'], POLICY)
        // Usage counted now leaves the minute after one window and one sub-bucket (63 s), the hour
        // after 3,780 s; the month is a calendar month.
        t.equal(first.headers.ratelimit, `"minute";r=2;t=63, "hour";r=4;t=3780, "month";r=99;t=${MONTH_LEFT}`)

        clock.now = T0 + 10_000
        await app.inject({ url: '/', headers: TENANT })
        const third = await app.inject({ url: '/', headers: TENANT })
        t.equal(third.headers.ratelimit, `"minute";r=0;t=62, "hour";r=2;t=3770, "month";r=97;t=${MONTH_LEFT - 10}`)

        const refused = await app.inject({ url: '/', headers: TENANT })
        t.equal(refused.statusCode, 429)
        // The first request's sub-bucket leaves the minute at T0 + 63 s: 53 s from now.
        t.equal(refused.headers['retry-after'], '53')
        t.equal(refused.headers.ratelimit, `"minute";r=0;t=53, "hour";r=2;t=3770, "month";r=97;t=${MONTH_LEFT - 10}`,
          'the window that refused gives the wait for this request: Retry-After is not earlier than its t')
        t.equal(refused.headers['ratelimit-policy'], POLICY, 'the policy does not change on a 429')
      })
    }

    t.test('a window with nothing counted: draft-10 has no more quota to come (t=0), draft-11 offers the whole window', async t => {
      const expected = { 'draft-10': 0, 'draft-11': 60 }
      for (const draft of ['draft-10', 'draft-11'] as const) {
        const clock = { now: T0 }
        const { app, release } = await appAt(t, kind, clock, draft)
        const holding = app.inject({ url: '/hold', headers: TENANT })
        // A request that runs for 70 s holds the tier's one concurrency slot; its minute usage has left.
        await waitForLease(app)
        clock.now = T0 + 70_000
        const refused = await app.inject({ url: '/', headers: TENANT })
        t.equal(refused.statusCode, 429)
        t.equal(refused.headers['x-ratelimit-error'], 'concurrent_limit_exceeded')
        t.equal(refused.headers.ratelimit, `"minute";r=3;t=${expected[draft]}, "hour";r=4;t=3710, "month";r=99;t=${MONTH_LEFT - 70}`, draft)
        release()
        t.equal((await holding).statusCode, 200)
      }
    })

    t.test('`true` is draft-10', async t => {
      const answers: string[] = []
      for (const ietfHeaders of [true, 'draft-10'] as const) {
        const { app } = await appAt(t, kind, { now: T0 }, ietfHeaders)
        const res = await app.inject({ url: '/', headers: TENANT })
        answers.push(`${String(res.headers['ratelimit-policy'])} | ${String(res.headers.ratelimit)}`)
      }
      t.equal(answers[0], answers[1])
      t.equal(answers[0], `${POLICY} | "minute";r=2;t=63, "hour";r=4;t=3780, "month";r=99;t=${MONTH_LEFT}`)
    })
  })
}

t.test('an invalid ietfHeaders fails registration naming the option and its values', async t => {
  for (const ietfHeaders of ['draft-12', 'yes', 11]) {
    const app = Fastify()
    t.teardown(() => app.close())
    await t.rejects(
      async () => { await app.register(rateLimiting, { ietfHeaders } as unknown as RateLimitingOptions).ready() },
      { code: 'FST_MAESTRO_RL_INVALID_OPTION', message: /options\.ietfHeaders must be boolean or must be "draft-10" or "draft-11"/ },
      JSON.stringify(ietfHeaders))
  }
})

/** Until the held request's lease is taken (its admission has been decided). */
async function waitForLease (app: FastifyInstance): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const usage = await app.policies.usage('acme').catch(() => undefined)
    if (usage !== undefined && usage.concurrent.inFlight >= 1) return
    await new Promise(resolve => setImmediate(resolve))
  }
  throw new Error('the held request never took its lease')
}
