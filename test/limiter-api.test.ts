// fastify.rateLimiter: consume, peek and refund share the policies and counters of HTTP requests.
import t from 'tap'
import { Registry } from 'prom-client'
import { InvalidLimiterCallError } from '../dist/index.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { STORE_KINDS } from './helpers/stores.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'

const TIERS = {
  five: { requestsPerMinute: 5, requestsPerHour: 100, concurrentRequests: 1, monthlyQuota: 1000 },
  wide: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null }
}
const acme = { tenantId: 'acme', tier: 'five' }
const headers = { 'x-tenant': 'acme', 'x-tier': 'five' }

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    const registry = new Registry()
    const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: TIERS, metrics: { registry } } }, app => {
      app.get('/', async () => 'ok')
      app.get('/search', { config: { rateLimit: { bucket: 'search' } } }, async () => 'ok')
    })

    t.test('consume counts with the tenant\'s HTTP requests', async t => {
      t.equal((await app.inject({ url: '/', headers })).headers['x-ratelimit-remaining-minute'], '4')
      const consumed = await app.rateLimiter.consume(acme, { cost: 2 })
      t.equal(consumed.allowed, true)
      t.equal(consumed.minute.remaining, 2)
      t.equal(consumed.month.remaining, 997)
      t.equal(consumed.release, undefined, 'no lease asked, none taken')
      t.equal((await app.inject({ url: '/', headers })).headers['x-ratelimit-remaining-minute'], '1')
      const peeked = await app.rateLimiter.peek(acme, { cost: 2 })
      t.equal(peeked.allowed, false, 'peek: 2 more would not fit')
      t.equal(peeked.reason, 'rate_limit_exceeded')
      t.ok(peeked.retryAfterMs > 0)
      const fits = await app.rateLimiter.peek(acme)
      t.equal(fits.allowed, true)
      t.equal(fits.minute.remaining, 0, 'one more would fit')
      t.equal((await app.rateLimiter.peek(acme)).minute.remaining, 0, 'peeking consumed nothing')
      t.equal((await app.rateLimiter.consume(acme)).allowed, true)
      const refused = await app.rateLimiter.consume(acme)
      t.equal(refused.allowed, false)
      t.equal(refused.reason, 'rate_limit_exceeded')
      t.equal((await app.inject({ url: '/', headers })).statusCode, 429, 'and HTTP is refused too')

      const refunded = await app.rateLimiter.refund(acme, { cost: 3 })
      t.same(refunded, { minute: 3, hour: 3, month: 3 })
      t.equal((await app.inject({ url: '/', headers })).headers['x-ratelimit-remaining-minute'], '2', 'HTTP sees the refund')
      const all = await app.rateLimiter.refund(acme, { cost: 100 })
      t.same(all, { minute: 3, hour: 3, month: 3 }, 'never more than is counted')
      t.equal((await app.rateLimiter.peek(acme)).minute.remaining, 4, 'never below zero')
    })

    t.test('a bucket shares the counters of HTTP routes naming it', async t => {
      const id = { tenantId: 'globex', tier: 'five' }
      await app.inject({ url: '/search', headers: { 'x-tenant': 'globex', 'x-tier': 'five' } })
      t.equal((await app.rateLimiter.consume(id, { bucket: 'search' })).minute.remaining, 3)
      t.equal((await app.rateLimiter.peek(id)).minute.remaining, 4, 'the shared counters are apart')
      t.equal((await app.rateLimiter.peek(id)).month.remaining, 997, 'the month is the tenant\'s across buckets')
    })

    t.test('a lease only when asked, given back exactly once', async t => {
      const id = { tenantId: 'initech', tier: 'five' }
      const first = await app.rateLimiter.consume(id, { lease: true })
      t.equal(first.allowed, true)
      t.equal(first.concurrent.inFlight, 1)
      t.equal(typeof first.release, 'function')
      const second = await app.rateLimiter.consume(id, { lease: true })
      t.equal(second.reason, 'concurrent_limit_exceeded')
      t.equal((await app.rateLimiter.consume(id)).allowed, true, 'without a lease, concurrency is not checked')
      t.equal((await app.inject({ url: '/', headers: { 'x-tenant': 'initech', 'x-tier': 'five' } })).json().reason, 'concurrent_limit_exceeded', 'HTTP sees the lease')
      first.release?.()
      first.release?.()
      const third = await app.rateLimiter.consume(id, { lease: true })
      t.equal(third.allowed, true, 'given back')
      t.equal((await app.rateLimiter.consume(id, { lease: true })).allowed, false, 'once: the second release() gave nothing back')
      third.release?.()
    })

    t.test('blocks, shadow mode, unlimited tiers and anonymous clients', async t => {
      await app.policies.block('mallory', { reason: 'abuse' })
      const blocked = await app.rateLimiter.consume({ tenantId: 'mallory' })
      t.equal(blocked.allowed, false)
      t.equal(blocked.reason, 'blocked')
      t.equal((await app.rateLimiter.peek({ tenantId: 'mallory' })).reason, 'blocked')

      await app.policies.setShadowMode({ scope: 'tenant', tenantId: 'shady' }, true)
      for (let i = 0; i < 5; i++) await app.rateLimiter.consume({ tenantId: 'shady', tier: 'five' })
      const shadow = await app.rateLimiter.consume({ tenantId: 'shady', tier: 'five' })
      t.equal(shadow.allowed, true, 'shadow mode: never enforced')
      t.equal(shadow.shadow, 'rate_limit_exceeded', 'but reported')

      const root = await app.rateLimiter.consume({ tenantId: 'root', tier: 'platform_admin' })
      t.equal(root.allowed, true)
      t.equal(root.minute.limit, Infinity)

      const a = await app.rateLimiter.consume({ anonymous: '2001:db8:1:2::1' })
      const b = await app.rateLimiter.consume({ anonymous: '2001:db8:1:2::ffff' })
      t.equal(a.minute.limit, 5, 'the anonymous tier')
      t.equal(b.minute.remaining, a.minute.remaining - 1, 'one IPv6 network, one key')
    })

    t.test('bad calls fail with an error naming the argument, and count nothing', async t => {
      const before = (await app.rateLimiter.peek({ tenantId: 'careful', tier: 'five' })).minute.remaining
      const bad: Array<[string, () => Promise<unknown>]> = [
        ['cost', () => app.rateLimiter.consume({ tenantId: 'careful' }, { cost: 1.5 })],
        ['cost', () => app.rateLimiter.consume({ tenantId: 'careful' }, { cost: -1 })],
        ['tenantId', () => app.rateLimiter.consume({ tenantId: '' })],
        ['bucket', () => app.rateLimiter.peek({ tenantId: 'careful' }, { bucket: '' })],
        ['identity', () => app.rateLimiter.refund(null as unknown as { tenantId: string })],
        ['anonymous', () => app.rateLimiter.consume({ anonymous: 42 as unknown as string })]
      ]
      for (const [name, call] of bad) {
        const err = await call().then(() => undefined, (thrown: unknown) => thrown)
        t.ok(err instanceof InvalidLimiterCallError && err.message.includes(name), `${name}: ${String(err)}`)
      }
      t.equal((await app.rateLimiter.peek({ tenantId: 'careful', tier: 'five' })).minute.remaining, before)
    })

    t.test('the calls are counted under endpoint "api"', async t => {
      const text = await registry.metrics()
      t.match(text, /rate_limit_requests_total\{[^}]*endpoint="api"[^}]*status="allowed"/)
      t.match(text, /rate_limit_rejections_total\{[^}]*endpoint="api"[^}]*reason="blocked"/)
    })
  })
}

t.test('500 parallel consume calls over two instances admit exactly the limit', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  const options = { redis, tiers: { hundred: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null } } }
  const a = await buildApp(t, { kind: 'redis', keyPrefix, options })
  const b = await buildApp(t, { kind: 'redis', keyPrefix, options })
  const id = { tenantId: 'crowd', tier: 'hundred' }
  const calls = Array.from({ length: 500 }, (_, i) => (i % 2 === 0 ? a : b).rateLimiter.consume(id))
  const decisions = await Promise.all(calls)
  t.equal(decisions.filter(d => d.allowed).length, 100)
  t.equal((await a.policies.usage('crowd', { tier: 'hundred' })).minute.used, 100)
})
