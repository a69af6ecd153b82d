// Per-route `config.rateLimit`: false, cost, bucket, limits, tiers; validated at boot.
import Fastify from 'fastify'
import t from 'tap'
import rateLimiting from '../dist/index.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { STORE_KINDS } from './helpers/stores.js'

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    t.test('rateLimit: false is neither limited nor counted', async t => {
      const app = await buildApp(t, { kind }, app => {
        app.get('/', async () => 'limited')
        app.get('/health', { config: { rateLimit: false } }, async () => 'free')
      })
      for (let i = 0; i < 10; i++) {
        const res = await app.inject({ url: '/health' })
        t.equal(res.statusCode, 200)
        t.notOk(res.headers['x-ratelimit-limit-minute'], 'no headers')
      }
      t.equal((await app.inject({ url: '/' })).headers['x-ratelimit-remaining-minute'], '4', 'health checks did not count')
    })

    t.test("HEAD counts in its GET route's counters", async t => {
      let ran = 0
      const app = await buildApp(t, { kind }, app => {
        app.get('/report', { config: { rateLimit: { limits: { requestsPerMinute: 3 } } } }, async () => { ran++; return 'expensive' })
      })
      for (let i = 0; i < 3; i++) t.equal((await app.inject({ url: '/report' })).statusCode, 200)
      for (let i = 0; i < 3; i++) t.equal((await app.inject({ method: 'HEAD', url: '/report' })).statusCode, 429, 'HEAD finds the GET window full')
      t.equal(ran, 3, 'the handler ran only for the three admitted')
    })

    t.test('cost counts n', async t => {
      const app = await buildApp(t, { kind }, app => {
        app.get('/', async () => 'one')
        app.get('/reports', { config: { rateLimit: { cost: 3 } } }, async () => 'three')
      })
      t.equal((await app.inject({ url: '/reports' })).headers['x-ratelimit-remaining-minute'], '2')
      t.equal((await app.inject({ url: '/reports' })).statusCode, 429, 'three more do not fit in two')
      t.equal((await app.inject({ url: '/' })).headers['x-ratelimit-remaining-minute'], '1', 'shared counters')
    })

    t.test('bucket: routes naming it count apart from the shared counters', async t => {
      const app = await buildApp(t, { kind }, app => {
        app.get('/', async () => 'shared')
        app.get('/search', { config: { rateLimit: { bucket: 'search' } } }, async () => 'search')
        app.get('/search/advanced', { config: { rateLimit: { bucket: 'search' } } }, async () => 'search')
      })
      for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/' })).statusCode, 200)
      t.equal((await app.inject({ url: '/' })).statusCode, 429)
      t.equal((await app.inject({ url: '/search' })).headers['x-ratelimit-remaining-minute'], '4', 'search has its own counters')
      t.equal((await app.inject({ url: '/search/advanced' })).headers['x-ratelimit-remaining-minute'], '3', 'shared by routes naming the bucket')
    })

    t.test('the monthly quota is the tenant\'s across every bucket; a route\'s own monthlyQuota caps its bucket on top', async t => {
      const small = { requestsPerMinute: 100, requestsPerHour: 1000, concurrentRequests: 10, monthlyQuota: 6 }
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: { small } } }, app => {
        app.get('/', async () => 'shared')
        app.get('/search', { config: { rateLimit: { bucket: 'search' } } }, async () => 'search')
        app.post('/export', { config: { rateLimit: { limits: { monthlyQuota: 2 } } } }, async () => 'exported')
      })
      const acme = { 'x-tenant': 'acme', 'x-tier': 'small' }
      const month = (res: { headers: Record<string, unknown> }): string => `${String(res.headers['x-ratelimit-remaining-month'])} of ${String(res.headers['x-ratelimit-limit-month'])}`
      t.equal(month(await app.inject({ url: '/', headers: acme })), '5 of 6')
      t.equal(month(await app.inject({ url: '/search', headers: acme })), '4 of 6', 'a bucket of its own draws on the same month')
      t.equal(month(await app.inject({ method: 'POST', url: '/export', headers: acme })), '1 of 2', 'the route\'s cap binds first: it is the month shown')
      t.equal(month(await app.inject({ method: 'POST', url: '/export', headers: acme })), '0 of 2')
      const refused = await app.inject({ method: 'POST', url: '/export', headers: acme })
      t.equal(refused.statusCode, 429)
      t.equal(refused.json().reason, 'quota_exceeded', 'the route\'s month is spent')
      t.equal(month(await app.inject({ url: '/', headers: acme })), '1 of 6', 'the exports counted in the tenant\'s month too')
      t.match(await app.policies.usage('acme', { bucket: 'search' }), { month: { used: 5 } }, 'usage of any bucket reports the tenant\'s month')
      t.equal(month(await app.inject({ url: '/search', headers: acme })), '0 of 6')
      const spent = await app.inject({ url: '/search', headers: acme })
      t.equal(spent.statusCode, 429)
      t.equal(spent.json().reason, 'quota_exceeded', 'the tenant\'s month is spent, in every bucket')
    })

    t.test('limits and tiers: per-route limits in counters of the route', async t => {
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant } }, app => {
        app.get('/', async () => 'shared')
        app.post('/export', {
          config: {
            rateLimit: {
              limits: { requestsPerMinute: 2 },
              tiers: { enterprise: { requestsPerMinute: 20, monthlyQuota: null }, platform_admin: { requestsPerMinute: 1 } }
            }
          }
        }, async () => 'exported')
      })
      const starter = { 'x-tenant': 'a', 'x-tier': 'starter' }
      const first = await app.inject({ method: 'POST', url: '/export', headers: starter })
      t.equal(first.headers['x-ratelimit-limit-minute'], '2', 'limits apply to every tier')
      t.equal(first.headers['x-ratelimit-limit-hour'], '100', 'fields not named keep the tier value')
      await app.inject({ method: 'POST', url: '/export', headers: starter })
      t.equal((await app.inject({ method: 'POST', url: '/export', headers: starter })).statusCode, 429)
      t.equal((await app.inject({ url: '/', headers: starter })).headers['x-ratelimit-remaining-minute'], '9', 'the route used counters of its own')
      const ent = await app.inject({ method: 'POST', url: '/export', headers: { 'x-tenant': 'b', 'x-tier': 'enterprise' } })
      t.equal(ent.headers['x-ratelimit-limit-minute'], '20', 'tiers override limits')
      t.equal(ent.headers['x-ratelimit-limit-month'], '1000000', 'a month of null sets no cap of the route\'s own: the tenant\'s quota still holds')
      const admin = await app.inject({ method: 'POST', url: '/export', headers: { 'x-tenant': 'c', 'x-tier': 'platform_admin' } })
      t.equal(admin.headers['x-ratelimit-limit-minute'], '1', 'a route can limit even an unlimited tier')
    })

    t.test('global: false limits only routes that ask', async t => {
      const app = await buildApp(t, { kind, options: { global: false } }, app => {
        app.get('/', async () => 'free')
        app.get('/limited', { config: { rateLimit: true } }, async () => 'limited')
        app.get('/costly', { config: { rateLimit: { cost: 2 } } }, async () => 'limited')
      })
      t.notOk((await app.inject({ url: '/' })).headers['x-ratelimit-limit-minute'])
      t.equal((await app.inject({ url: '/limited' })).headers['x-ratelimit-remaining-minute'], '4')
      t.equal((await app.inject({ url: '/costly' })).headers['x-ratelimit-remaining-minute'], '2')
    })

    t.test('limits apply in the chosen hook', async t => {
      const order: string[] = []
      const app = await buildApp(t, { kind, options: { hook: 'preHandler' } }, app => {
        app.addHook('preValidation', async () => { order.push('preValidation') })
        app.get('/', async (request) => { order.push(`handler:${request.rateLimit?.decision?.allowed === true ? 'limited' : 'not'}`); return 'ok' })
      })
      await app.inject({ url: '/' })
      t.same(order, ['preValidation', 'handler:limited'])
    })

    for (const hook of ['onRequest', 'preParsing', 'preValidation', 'preHandler'] as const) {
      t.test(`hook: '${hook}' limits, keeps the body, and answers 429 past the limit`, async t => {
        const app = await buildApp(t, { kind, options: { hook } }, app => {
          app.post('/echo', async (request) => request.body)
        })
        for (let i = 0; i < 5; i++) {
          const res = await app.inject({ method: 'POST', url: '/echo', payload: { n: i } })
          t.equal(res.statusCode, 200)
          t.same(res.json(), { n: i }, 'the handler got the body')
          t.equal(res.headers['x-ratelimit-remaining-minute'], String(4 - i))
        }
        const refused = await app.inject({ method: 'POST', url: '/echo', payload: { n: 5 } })
        t.equal(refused.statusCode, 429)
        t.equal(refused.json().code, 'FST_MAESTRO_RL_RATE_LIMITED')
      })
    }

    // Fastify's error handler answers, keeping the 429 already set: the request never hangs.
    t.test('a throwing onExceeded or errorResponseBuilder reaches Fastify\'s error handler', async t => {
      for (const [options, message] of [
        [{ onExceeded: () => { throw new Error('listener broke') } }, 'listener broke'],
        [{ errorResponseBuilder: () => { throw new Error('builder broke') } }, 'builder broke']
      ] as const) {
        const app = await buildApp(t, { kind, options })
        for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/' })).statusCode, 200)
        // The first rejection comes from the store, the next ones from the rejection cache.
        for (let i = 0; i < 3; i++) {
          const res = await app.inject({ url: '/' })
          t.equal(res.statusCode, 429)
          t.equal(res.json().message, message)
        }
      }
    })

    t.test('so does a throwing onExceeded after an asynchronous extractor', async t => {
      const app = await buildApp(t, {
        kind,
        options: {
          tenantExtractor: async () => ({ tenantId: 'async-tenant', tier: 'anonymous' }),
          onExceeded: () => { throw new Error('listener broke') }
        }
      })
      for (let i = 0; i < 5; i++) t.equal((await app.inject({ url: '/' })).statusCode, 200)
      for (let i = 0; i < 2; i++) t.equal((await app.inject({ url: '/' })).json().message, 'listener broke')
    })
  })
}

t.test('invalid route config fails boot naming the route and the field', async t => {
  const cases: Array<[unknown, RegExp]> = [
    [{ cost: 0 }, /GET \/bad: rateLimit\.cost must be >= 1/],
    [{ cost: 1.5 }, /rateLimit\.cost must be integer/],
    [{ bucket: '' }, /rateLimit\.bucket/],
    [{ limits: { requestsPerMinute: -1 } }, /rateLimit\.limits\.requestsPerMinute/],
    [{ limits: { requestsPerMinit: 5 } }, /rateLimit\.limits\.requestsPerMinit is not a known field/],
    [{ tiers: { starter: { monthlyQuota: 'lots' } } }, /rateLimit\.tiers\.starter\.monthlyQuota/],
    [{ costs: 2 }, /rateLimit\.costs is not a known field/],
    ['yes', /rateLimit/]
  ]
  for (const [config, message] of cases) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(rateLimiting)
    const attempt = async (): Promise<void> => {
      app.get('/bad', { config: { rateLimit: config as never } }, async () => 'never')
      await app.ready()
    }
    await t.rejects(attempt(), { code: 'FST_MAESTRO_RL_INVALID_ROUTE_CONFIG', message }, JSON.stringify(config))
  }
})
