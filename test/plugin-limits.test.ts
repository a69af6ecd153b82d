// End to end through Fastify: tiers, rejections, headers and the 429 body, on both stores.
import t from 'tap'
import { buildApp, headerTenant } from './helpers/app.js'
import { STORE_KINDS } from './helpers/stores.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    t.test('anonymous clients get the anonymous tier, keyed by IP, with every header', async t => {
      const app = await buildApp(t, { kind })
      const statuses: number[] = []
      let last
      for (let i = 0; i < 6; i++) {
        last = await app.inject({ url: '/', remoteAddress: '10.0.0.1' })
        statuses.push(last.statusCode)
      }
      t.same(statuses, [200, 200, 200, 200, 200, 429])
      const first = await app.inject({ url: '/', remoteAddress: '10.0.0.2' })
      t.equal(first.statusCode, 200, 'another address has its own counters')
      t.equal(first.headers['x-ratelimit-limit-minute'], '5')
      t.equal(first.headers['x-ratelimit-remaining-minute'], '4')
      t.equal(first.headers['x-ratelimit-limit-hour'], '50')
      t.equal(first.headers['x-ratelimit-remaining-hour'], '49')
      t.equal(first.headers['x-ratelimit-limit-month'], '1000')
      t.equal(first.headers['x-ratelimit-remaining-month'], '999')
      t.equal(first.headers['x-ratelimit-concurrent-limit'], '5')
      const reset = Number(first.headers['x-ratelimit-reset'])
      const nowSeconds = Date.now() / 1000
      t.ok(reset > nowSeconds + 59 && reset <= nowSeconds + 64, 'reset: when everything counted has left the minute window')

      const rejected = last as Awaited<ReturnType<typeof app.inject>>
      t.equal(rejected.headers['x-ratelimit-error'], 'rate_limit_exceeded')
      const retryAfter = Number(rejected.headers['retry-after'])
      t.ok(retryAfter >= 60 && retryAfter <= 63, `Retry-After is the real wait (${retryAfter}s), not a guess`)
      t.equal(rejected.headers['x-ratelimit-remaining-minute'], '0')
      t.equal(rejected.headers['content-type'], 'application/json; charset=utf-8')
      t.match(rejected.json(), { statusCode: 429, error: 'Too Many Requests', code: 'FST_MAESTRO_RL_RATE_LIMITED', reason: 'rate_limit_exceeded', message: /retry in \d+ seconds/ })
    })

    t.test('tenants get their tier; unknown tiers fall back to starter, logged once', async t => {
      const warnings: string[] = []
      const app = await buildApp(t, {
        kind,
        options: { tenantExtractor: headerTenant },
        server: { logger: { level: 'warn', stream: { write: (line: string) => warnings.push(line) } } }
      })
      const pro = await app.inject({ url: '/', headers: { 'x-tenant': 'acme', 'x-tier': 'professional' } })
      t.equal(pro.headers['x-ratelimit-limit-minute'], '50')
      t.equal(pro.headers['x-ratelimit-concurrent-limit'], '50')
      const ent = await app.inject({ url: '/', headers: { 'x-tenant': 'big', 'x-tier': 'enterprise' } })
      t.equal(ent.headers['x-ratelimit-limit-hour'], '10000')
      t.equal(ent.headers['x-ratelimit-limit-month'], '1000000')
      for (let i = 0; i < 3; i++) {
        const gold = await app.inject({ url: '/', headers: { 'x-tenant': 'shiny', 'x-tier': 'gold' } })
        t.equal(gold.headers['x-ratelimit-limit-minute'], '10', 'unknown tier → starter')
      }
      const noTier = await app.inject({ url: '/', headers: { 'x-tenant': 'plain' } })
      t.equal(noTier.headers['x-ratelimit-limit-minute'], '10', 'no tier → starter')
      t.equal(warnings.filter(w => w.includes('unknown tier')).length, 1, 'one warning for the name, not one per request')
    })

    t.test('platform_admin is unlimited and sends no headers', async t => {
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant } })
      for (let i = 0; i < 20; i++) {
        const res = await app.inject({ url: '/', headers: { 'x-tenant': 'ops', 'x-tier': 'platform_admin' } })
        t.equal(res.statusCode, 200)
        t.notOk(res.headers['x-ratelimit-limit-minute'])
      }
    })

    t.test('options replace and add tiers', async t => {
      const app = await buildApp(t, {
        kind,
        options: {
          tenantExtractor: headerTenant,
          tiers: {
            starter: { requestsPerMinute: 2, requestsPerHour: 20, concurrentRequests: 1, monthlyQuota: 100 },
            burst: { requestsPerMinute: 3, requestsPerHour: null, concurrentRequests: Infinity, monthlyQuota: null }
          }
        }
      })
      const codes = []
      for (let i = 0; i < 3; i++) codes.push((await app.inject({ url: '/', headers: { 'x-tenant': 'a', 'x-tier': 'starter' } })).statusCode)
      t.same(codes, [200, 200, 429])
      const burst = await app.inject({ url: '/', headers: { 'x-tenant': 'b', 'x-tier': 'burst' } })
      t.equal(burst.headers['x-ratelimit-limit-minute'], '3')
      t.notOk(burst.headers['x-ratelimit-limit-hour'], 'unlimited dimensions have no headers')
      t.notOk(burst.headers['x-ratelimit-concurrent-limit'])
      t.notOk(burst.headers['x-ratelimit-limit-month'])
    })

    t.test('monthly quota rejections say quota_exceeded and wait for the month', async t => {
      const app = await buildApp(t, {
        kind,
        options: {
          tenantExtractor: headerTenant,
          tiers: { tiny: { requestsPerMinute: 100, requestsPerHour: 100, concurrentRequests: null, monthlyQuota: 2 } }
        }
      })
      const headers = { 'x-tenant': 'q', 'x-tier': 'tiny' }
      await app.inject({ url: '/', headers })
      await app.inject({ url: '/', headers })
      const res = await app.inject({ url: '/', headers })
      t.equal(res.statusCode, 429)
      t.equal(res.headers['x-ratelimit-error'], 'quota_exceeded')
      const now = new Date()
      const monthEnd = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1)
      t.ok(Math.abs(Number(res.headers['retry-after']) - (monthEnd - Date.now()) / 1000) < 5, 'Retry-After runs to the end of the UTC month')
      t.equal(res.headers['x-ratelimit-reset'], String(Math.ceil(monthEnd / 1000)))
    })

    t.test('IETF RateLimit-Policy and RateLimit fields', async t => {
      const app = await buildApp(t, { kind, options: { ietfHeaders: true } })
      const res = await app.inject({ url: '/' })
      t.match(res.headers['ratelimit-policy'], /^"minute";q=5;w=60, "hour";q=50;w=3600, "month";q=1000;w=(2419200|2505600|2592000|2678400)$/)
      t.match(res.headers.ratelimit, /^"minute";r=4;t=\d+, "hour";r=49;t=\d+, "month";r=999;t=\d+$/)
      const plain = await buildApp(t, { kind })
      t.notOk((await plain.inject({ url: '/' })).headers['ratelimit-policy'], 'off by default')
    })

    t.test('compact headers: limit, remaining and reset of the window with the least left', async t => {
      const app = await buildApp(t, {
        kind,
        options: {
          headers: 'compact',
          tenantExtractor: headerTenant,
          tiers: {
            hourly: { requestsPerMinute: 100, requestsPerHour: 3, concurrentRequests: 10, monthlyQuota: 1000 },
            inflight: { requestsPerMinute: null, requestsPerHour: null, concurrentRequests: 4, monthlyQuota: null }
          }
        }
      })
      const anonymous = await app.inject({ url: '/' })
      t.same(
        [anonymous.headers['x-ratelimit-limit'], anonymous.headers['x-ratelimit-remaining']], ['5', '4'],
        'anonymous: the minute window (4 left of 5, against 49 of 50 and 999 of 1,000)')
      t.ok(Math.abs(Number(anonymous.headers['x-ratelimit-reset']) - Date.now() / 1000 - 63) < 5, 'reset: when the minute window is wholly free')
      t.notOk(anonymous.headers['x-ratelimit-limit-minute'], 'no per-window headers')
      t.notOk(anonymous.headers['x-ratelimit-concurrent-limit'])

      const headers = { 'x-tenant': 'h', 'x-tier': 'hourly' }
      const first = await app.inject({ url: '/', headers })
      t.same([first.headers['x-ratelimit-limit'], first.headers['x-ratelimit-remaining']], ['3', '2'], 'the hour window binds')
      await app.inject({ url: '/', headers })
      await app.inject({ url: '/', headers })
      const refused = await app.inject({ url: '/', headers })
      t.equal(refused.statusCode, 429)
      t.equal(refused.headers['x-ratelimit-remaining'], '0')
      const admittedAt = Date.now() / 1000 + Number(refused.headers['retry-after'])
      t.ok(Math.abs(Number(refused.headers['x-ratelimit-reset']) - admittedAt) <= 1.5, 'on a rejection, reset is when it would be admitted')

      const concurrencyOnly = await app.inject({ url: '/', headers: { 'x-tenant': 'c', 'x-tier': 'inflight' } })
      t.same(
        [concurrencyOnly.headers['x-ratelimit-limit'], concurrencyOnly.headers['x-ratelimit-remaining'], concurrencyOnly.headers['x-ratelimit-reset']],
        ['4', '3', undefined], 'no window limited: concurrency, with no reset')
    })

    t.test('errorResponseBuilder and onExceeded shape the rejection', async t => {
      const seen: string[] = []
      const app = await buildApp(t, {
        kind,
        options: {
          errorResponseBuilder: (_request, context) => ({ oops: context.decision.reason, tier: context.tier }),
          onExceeded: (request, _reply, context) => { seen.push(`${context.subject}:${context.decision.reason ?? ''}:${request.url}`) }
        }
      })
      for (let i = 0; i < 5; i++) await app.inject({ url: '/', remoteAddress: '10.9.9.9' })
      const res = await app.inject({ url: '/', remoteAddress: '10.9.9.9' })
      t.equal(res.statusCode, 429)
      t.same(res.json(), { oops: 'rate_limit_exceeded', tier: 'anonymous' })
      t.same(seen, ['10.9.9.9:rate_limit_exceeded:/'])
    })

    t.test('request.rateLimit tells the handler what was decided', async t => {
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant } }, app => {
        app.get('/', async (request) => ({ tier: request.rateLimit?.tier, remaining: request.rateLimit?.decision?.minute.remaining }))
        app.get('/free', { config: { rateLimit: false } }, async (request) => ({ limited: request.rateLimit !== null }))
      })
      t.same((await app.inject({ url: '/', headers: { 'x-tenant': 'a', 'x-tier': 'professional' } })).json(), { tier: 'professional', remaining: 49 })
      t.same((await app.inject({ url: '/free' })).json(), { limited: false })
    })
  })
}

t.test('two Fastify instances sharing one Redis count together', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  const a = await buildApp(t, { kind: 'redis', keyPrefix })
  const b = await buildApp(t, { kind: 'redis', keyPrefix })
  const codes = []
  for (let i = 0; i < 6; i++) codes.push((await (i % 2 === 0 ? a : b).inject({ url: '/', remoteAddress: '10.1.1.1' })).statusCode)
  t.same(codes, [200, 200, 200, 200, 200, 429], 'five in all, whichever instance answers')
})

t.test('200 concurrent requests of one tenant: exactly the limit is admitted', async t => {
  for (const kind of STORE_KINDS) {
    const app = await buildApp(t, {
      kind,
      options: {
        tenantExtractor: headerTenant,
        tiers: { wide: { requestsPerMinute: 100, requestsPerHour: 1000, concurrentRequests: null, monthlyQuota: null } }
      }
    })
    const responses = await Promise.all(Array.from({ length: 200 }, () =>
      app.inject({ url: '/', headers: { 'x-tenant': 'herd', 'x-tier': 'wide' } })))
    t.equal(responses.filter(r => r.statusCode === 200).length, 100, `${kind}: 100 admitted`)
    t.equal(responses.filter(r => r.statusCode === 429).length, 100, `${kind}: 100 rejected`)
    const remaining = responses.filter(r => r.statusCode === 200).map(r => Number(r.headers['x-ratelimit-remaining-minute'])).sort((x, y) => x - y)
    t.same(remaining, Array.from({ length: 100 }, (_, i) => i), `${kind}: each admitted request saw a distinct remaining count`)
  }
})
