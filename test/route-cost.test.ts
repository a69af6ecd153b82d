// `config.rateLimit.cost` as a function of the request: counted at what it returns, and a bad answer
// is a 500 naming the route, an error log line, and nothing counted.
import Fastify from 'fastify'
import t from 'tap'
import rateLimiting, { RouteCostError } from '../dist/index.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { limits, makeStore, STORE_KINDS } from './helpers/stores.js'

interface LogLine { level: number, msg: string, route?: string, err?: { message?: string } }

/** The cost the test asks for in `x-cost` (1 without it). */
const headerCost = (request: { headers: Record<string, unknown> }): number => Number(request.headers['x-cost'] ?? 1)

const remaining = (res: { headers: Record<string, unknown> }): unknown => res.headers['x-ratelimit-remaining-minute']

/** Each bad answer a cost function can give, by name. */
const BAD: Record<string, () => unknown> = {
  negative: () => -1,
  fraction: () => 1.5,
  NaN: () => NaN,
  Infinity: () => Infinity,
  string: () => '3',
  undefined: () => undefined,
  'a huge string': () => 'x'.repeat(100_000),
  throw: () => { throw new Error('no items') },
  'a rejected promise': async () => { throw new Error('lookup failed') },
  'a promise of -1': async () => -1
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    t.test('a synchronous and an asynchronous function count what they return', async t => {
      const seen: number[] = []
      const app = await buildApp(t, { kind }, app => {
        app.get('/sync', { config: { rateLimit: { cost: headerCost } } }, async request => { seen.push(request.rateLimit?.cost as number); return 'ok' })
        app.get('/async', { config: { rateLimit: { cost: async request => { await new Promise(resolve => setImmediate(resolve)); return headerCost(request) } } } },
          async request => { seen.push(request.rateLimit?.cost as number); return 'ok' })
      })
      t.equal(remaining(await app.inject({ url: '/sync', headers: { 'x-cost': '2' } })), '3', 'five less two')
      t.equal(remaining(await app.inject({ url: '/async', headers: { 'x-cost': '2' } })), '1', 'three less two')
      const over = await app.inject({ url: '/sync', headers: { 'x-cost': '2' } })
      t.equal(over.statusCode, 429, 'two more do not fit in one')
      t.equal(remaining(await app.inject({ url: '/async' })), '0', 'the last one fits')
      t.same(seen, [2, 2, 1], 'request.rateLimit.cost holds the computed cost')
    })

    t.test('an asynchronous cost, then an asynchronous tenant extractor', async t => {
      const app = await buildApp(t, { kind, options: { tenantExtractor: async request => await headerTenant?.(request) } }, app => {
        app.get('/', { config: { rateLimit: { cost: async request => headerCost(request) } } }, async request => request.rateLimit)
      })
      const res = await app.inject({ url: '/', headers: { 'x-tenant': 'acme', 'x-cost': '7' } })
      t.match(res.json(), { subject: 'acme', cost: 7 })
      t.equal(res.headers['x-ratelimit-limit-minute'], String(Number(remaining(res)) + 7), 'seven counted for the tenant')
    })

    t.test('a bulk endpoint counts the items in its body (hook: preValidation)', async t => {
      const app = await buildApp(t, { kind, options: { hook: 'preValidation' } }, app => {
        app.post('/bulk', { config: { rateLimit: { cost: request => (request.body as { items: unknown[] }).items.length } } }, async () => 'stored')
      })
      const res = await app.inject({ method: 'POST', url: '/bulk', payload: { items: [1, 2, 3] } })
      t.equal(res.statusCode, 200)
      t.equal(remaining(res), '2', 'three items count three')
      t.equal((await app.inject({ method: 'POST', url: '/bulk', payload: { items: [1, 2, 3] } })).statusCode, 429)
      t.equal(remaining(await app.inject({ method: 'POST', url: '/bulk', payload: { items: [] } })), '2', 'an empty batch costs nothing')
    })

    t.test('in onRequest the body is not parsed yet: a function reading it fails loudly', async t => {
      const logs: LogLine[] = []
      const app = await buildApp(t, { kind, server: { logger: { level: 'error', stream: { write: (line: string) => logs.push(JSON.parse(line) as LogLine) } } } }, app => {
        app.post('/bulk', { config: { rateLimit: { cost: request => (request.body as { items: unknown[] }).items.length } } }, async () => 'stored')
      })
      const res = await app.inject({ method: 'POST', url: '/bulk', payload: { items: [1, 2, 3] } })
      t.equal(res.statusCode, 500)
      t.match(res.json().message, /^config\.rateLimit\.cost of route POST \/bulk threw: TypeError/)
    })

    t.test('a bad answer is a 500 naming the route, logged, and counts nothing', async t => {
      const logs: LogLine[] = []
      let ran = 0
      const app = await buildApp(t, { kind, server: { logger: { level: 'error', stream: { write: (line: string) => logs.push(JSON.parse(line) as LogLine) } } } }, app => {
        app.get('/bad', { config: { rateLimit: { cost: request => { const bad = request.headers['x-bad']; return typeof bad === 'string' ? BAD[bad]() as number : 1 } } } }, async () => { ran++; return 'ok' })
      })
      t.equal(remaining(await app.inject({ url: '/bad' })), '4', 'a good request counts one')
      const causes: Record<string, string | undefined> = {}
      for (const name of Object.keys(BAD)) {
        logs.length = 0
        const res = await app.inject({ url: '/bad', headers: { 'x-bad': name } })
        t.equal(res.statusCode, 500, `${name}: 500`)
        const body = res.json()
        t.equal(body.code, 'FST_MAESTRO_RL_INVALID_COST', `${name}: code`)
        t.match(body.message, /^config\.rateLimit\.cost of route GET \/bad /, `${name}: the message names the route`)
        t.ok(body.message.length < 200, `${name}: the message stays short (${body.message.length})`)
        t.notOk(remaining(res), `${name}: no rate-limit headers`)
        const line = logs.find(l => l.msg.startsWith('rate limiting: cost function of route GET /bad'))
        t.ok(line !== undefined && line.level === 50 && line.route === 'GET /bad', `${name}: an error line names the route`)
        causes[name] = line?.err?.message
      }
      t.equal(causes['a rejected promise'], 'lookup failed', 'the log line carries what the function threw')
      t.equal(causes.throw, 'no items')
      t.equal(remaining(await app.inject({ url: '/bad' })), '3', 'none of the failed requests counted')
      t.equal(ran, 2, 'the handler never ran for them')
    })

    t.test("the error reaches the app's error handler", async t => {
      const seen: unknown[] = []
      const app = await buildApp(t, { kind }, app => {
        app.setErrorHandler(async (err, _request, reply) => {
          seen.push(err)
          return await reply.code(503).send({ custom: true })
        })
        app.get('/', { config: { rateLimit: { cost: async () => { throw new Error('down') } } } }, async () => 'ok')
      })
      const res = await app.inject({ url: '/' })
      t.equal(res.statusCode, 503)
      t.same(res.json(), { custom: true })
      t.ok(seen[0] instanceof RouteCostError, 'a RouteCostError')
      t.match((seen[0] as Error).cause, { message: 'down' }, 'whose cause is what the function threw')
    })

    t.test('a cost of 0 is admitted at a full window and counts nothing', async t => {
      const app = await buildApp(t, { kind }, app => {
        app.get('/', { config: { rateLimit: { cost: headerCost } } }, async () => 'ok')
      })
      t.equal(remaining(await app.inject({ url: '/', headers: { 'x-cost': '0' } })), '5', 'nothing counted on empty counters')
      t.equal(remaining(await app.inject({ url: '/', headers: { 'x-cost': '5' } })), '0', 'the window is full')
      for (let i = 0; i < 3; i++) {
        const free = await app.inject({ url: '/', headers: { 'x-cost': '0' } })
        t.equal(free.statusCode, 200, 'a free request fits a full window')
        t.equal(remaining(free), '0')
      }
      t.equal((await app.inject({ url: '/' })).statusCode, 429, 'a paid one does not')
      t.equal((await app.inject({ url: '/', headers: { 'x-cost': '0' } })).statusCode, 200, 'nor does a rejection stop the next free one')
    })

    t.test('the store: cost 0 fits a full window, not one over its limit, and counts nothing in any window', async t => {
      const s = makeStore(t, kind)
      const keys = s.keys('zero')
      const admit = async (cost: number, l = limits(5, 10, 20)) => await s.store.admit({ keys, cost, limits: l, leaseId: '' })
      t.equal((await admit(5)).minute.remaining, 0)
      const free = await admit(0)
      t.ok(free.allowed, 'admitted at a full window')
      t.same([free.minute.remaining, free.hour.remaining, free.month.remaining], [0, 5, 15], 'nothing counted')
      const over = await admit(0, limits(3, 10, 20))
      t.notOk(over.allowed, 'refused once the window holds more than a lowered limit')
      t.equal(over.reason, 'rate_limit_exceeded')
      const usage = await s.store.usage(keys)
      t.same([usage.minute, usage.hour, usage.month], [5, 5, 5], 'only the paid request counted')
    })

    t.test("a cached rejection is only served to requests of the rejected request's cost", async t => {
      const app = await buildApp(t, { kind }, app => {
        app.get('/', { config: { rateLimit: { cost: headerCost } } }, async () => 'ok')
      })
      t.equal(remaining(await app.inject({ url: '/', headers: { 'x-cost': '3' } })), '2')
      for (let i = 0; i < 2; i++) t.equal((await app.inject({ url: '/', headers: { 'x-cost': '4' } })).statusCode, 429, 'four do not fit in two')
      const smaller = await app.inject({ url: '/', headers: { 'x-cost': '2' } })
      t.equal(smaller.statusCode, 200, 'two still fit')
      t.equal(remaining(smaller), '0')
      t.equal((await app.inject({ url: '/', headers: { 'x-cost': '1' } })).statusCode, 429, 'and then the window is full')
    })
  })
}

t.test('a static cost stays a whole number >= 1; only a function may say 0', async t => {
  for (const cost of [0, 1.5, '2', null]) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(rateLimiting, { store: 'memory' })
    t.throws(() => app.get('/', { config: { rateLimit: { cost: cost as number } } }, async () => 'ok'), { code: 'FST_MAESTRO_RL_INVALID_ROUTE_CONFIG', message: /route GET \/: .*cost/ }, `cost ${String(cost)} fails boot`)
  }
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { store: 'memory' })
  t.throws(() => app.get('/', { config: { rateLimit: { cost: () => 1, bucket: '' } } }, async () => 'ok'), { code: 'FST_MAESTRO_RL_INVALID_ROUTE_CONFIG', message: /bucket/ }, 'the rest of a config with a cost function is still validated')
})
