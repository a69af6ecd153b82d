// Refusals go through Fastify's error handling: an app's setErrorHandler and onError hooks see every
// one (429, 403, 503, 401, 500) as an @fastify/error instance, the rate-limit headers stay, and
// Fastify's own handler answers with the documented body.
import t from 'tap'
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify'
import { Redis } from 'ioredis'
import rateLimiting, {
  CallerUnidentifiedError, ExtractorFailedError, RateLimitExceededError, StoreUnavailableRefusalError, TenantBlockedError,
  type RateLimitingOptions
} from '../dist/index.js'
import { headerTenant, listen } from './helpers/app.js'
import { privateRedis, sharedRedis, uniquePrefix } from './helpers/redis.js'

/** A tier of one request a minute. */
const ONE_A_MINUTE = { requestsPerMinute: 1, requestsPerHour: 100, concurrentRequests: 10, monthlyQuota: 1000 }

interface Seen { handled: FastifyError[], onError: FastifyError[] }

/** An app whose error handler rewrites every error into a body of its own. */
async function appWithErrorHandler (t: { teardown (fn: () => unknown): void }, options: RateLimitingOptions): Promise<{ app: FastifyInstance, seen: Seen }> {
  const app = Fastify()
  t.teardown(() => app.close())
  const seen: Seen = { handled: [], onError: [] }
  await app.register(rateLimiting, options)
  app.setErrorHandler((err: FastifyError, _request, reply) => {
    seen.handled.push(err)
    reply.code(err.statusCode ?? 500).send({ failure: err.code, why: (err as { reason?: string }).reason ?? null })
  })
  app.addHook('onError', async (_request, _reply, err) => { seen.onError.push(err) })
  app.get('/', async () => ({ ok: true }))
  await app.ready()
  return { app, seen }
}

t.test('a 429 reaches the app\'s error handler, with the rate-limit headers', async t => {
  const redis = sharedRedis(t)
  const { app, seen } = await appWithErrorHandler(t, { redis, keyPrefix: uniquePrefix(t, redis), tenantExtractor: headerTenant, tiers: { tiny: ONE_A_MINUTE } })
  const headers = { 'x-tenant': 'acme', 'x-tier': 'tiny' }
  t.equal((await app.inject({ url: '/', headers })).statusCode, 200)
  const refused = await app.inject({ url: '/', headers })
  t.equal(refused.statusCode, 429)
  t.same(refused.json(), { failure: 'FST_MAESTRO_RL_RATE_LIMITED', why: 'rate_limit_exceeded' }, 'the app\'s body, not the plugin\'s')
  t.ok(Number(refused.headers['retry-after']) >= 1, 'Retry-After kept')
  t.equal(refused.headers['x-ratelimit-remaining-minute'], '0')
  t.equal(refused.headers['x-ratelimit-error'], 'rate_limit_exceeded')
  t.equal(seen.handled.length, 1)
  t.ok(seen.handled[0] instanceof RateLimitExceededError, 'an @fastify/error instance of the exported class')
  t.equal(seen.handled[0].statusCode, 429)
  t.match(seen.handled[0].message, /^Rate limit exceeded, retry in \d+ seconds?$/)
  t.equal(seen.onError.length, 1, 'onError hooks see it too')
})

t.test('a blocked tenant\'s 403 reaches it as well', async t => {
  const { app, seen } = await appWithErrorHandler(t, { tenantExtractor: headerTenant })
  await app.policies.block('mallory', { reason: 'abuse, ticket 7' })
  const refused = await app.inject({ url: '/', headers: { 'x-tenant': 'mallory' } })
  t.equal(refused.statusCode, 403)
  t.same(refused.json(), { failure: 'FST_MAESTRO_RL_BLOCKED', why: 'blocked' })
  t.equal(refused.headers['x-ratelimit-error'], 'blocked')
  t.ok(seen.handled[0] instanceof TenantBlockedError)
  t.equal(seen.handled[0].message, 'abuse, ticket 7')
})

t.test('the 503 of a store that cannot decide (failMode closed)', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  if (redis.status !== 'ready') await new Promise(resolve => redis.once('ready', resolve))
  const { app, seen } = await appWithErrorHandler(t, { redis, keyPrefix: uniquePrefix(t), failMode: 'closed' })
  t.equal((await app.inject({ url: '/' })).statusCode, 200)
  await server.stop()
  const refused = await app.inject({ url: '/' })
  t.equal(refused.statusCode, 503)
  t.equal(refused.headers['retry-after'], '1')
  t.same(refused.json(), { failure: 'FST_MAESTRO_RL_STORE_UNAVAILABLE', why: null })
  t.ok(seen.handled[0] instanceof StoreUnavailableRefusalError)
})

for (const [onExtractorError, status, Class] of [['unauthorized', 401, CallerUnidentifiedError], ['error', 500, ExtractorFailedError]] as const) {
  t.test(`an extractor failure (onExtractorError ${onExtractorError}) is a ${status} through the handler`, async t => {
    const { app, seen } = await appWithErrorHandler(t, {
      onExtractorError,
      tenantExtractor: async () => { throw new Error('token service down') }
    })
    const refused = await app.inject({ url: '/' })
    t.equal(refused.statusCode, status)
    t.same(refused.json(), { failure: 'FST_MAESTRO_RL_EXTRACTOR_FAILED', why: null })
    t.ok(seen.handled[0] instanceof Class)
  })
}

t.test('errorResponseBuilder: its body goes to the handler, or out as it is without one', async t => {
  const builder: RateLimitingOptions['errorResponseBuilder'] = (_request, context) => ({ statusCode: 429, tooMany: context.decision.reason })
  const handled = await appWithErrorHandler(t, { errorResponseBuilder: builder, tiers: { anonymous: ONE_A_MINUTE } })
  await handled.app.inject({ url: '/' })
  const viaHandler = await handled.app.inject({ url: '/' })
  t.equal(viaHandler.statusCode, 429)
  t.same(handled.seen.handled, [{ statusCode: 429, tooMany: 'rate_limit_exceeded' }], 'the handler receives what the builder made')

  const plain = Fastify()
  t.teardown(() => plain.close())
  await plain.register(rateLimiting, { errorResponseBuilder: builder, tiers: { anonymous: ONE_A_MINUTE } })
  plain.get('/', async () => ({ ok: true }))
  await plain.inject({ url: '/' })
  const asBuilt = await plain.inject({ url: '/' })
  t.equal(asBuilt.statusCode, 429)
  t.same(asBuilt.json(), { statusCode: 429, tooMany: 'rate_limit_exceeded' })
  t.ok(Number(asBuilt.headers['retry-after']) >= 1)
})

t.test('without an error handler of the app: the documented body, on a real socket', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { tenantExtractor: headerTenant, tiers: { tiny: ONE_A_MINUTE } })
  app.get('/', async () => ({ ok: true }))
  await app.policies.block('mallory')
  const port = await listen(app)
  const headers = { 'x-tenant': 'acme', 'x-tier': 'tiny' }
  t.equal((await fetch(`http://127.0.0.1:${port}/`, { headers })).status, 200)
  const refused = await fetch(`http://127.0.0.1:${port}/`, { headers })
  t.equal(refused.status, 429)
  const text = await refused.text()
  t.equal(refused.headers.get('content-length'), String(Buffer.byteLength(text)), 'Content-Length matches the body')
  const body = JSON.parse(text)
  t.same(Object.keys(body), ['statusCode', 'error', 'code', 'reason', 'message'], 'the fields, in this order')
  t.match(body, { statusCode: 429, error: 'Too Many Requests', code: 'FST_MAESTRO_RL_RATE_LIMITED', reason: 'rate_limit_exceeded', message: /retry in/ })
  const blocked = await fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-tenant': 'mallory' } })
  t.equal(blocked.status, 403)
  t.same(await blocked.json(), { statusCode: 403, error: 'Forbidden', code: 'FST_MAESTRO_RL_BLOCKED', reason: 'blocked', message: 'This tenant is blocked' })
})

t.test('an app\'s handler that answers with the error itself gets the documented body too', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { tiers: { anonymous: ONE_A_MINUTE } })
  const seen: string[] = []
  app.setErrorHandler((err: FastifyError, _request, reply) => {
    seen.push(String(err.code))
    reply.send(err)
  })
  app.get('/', async () => ({ ok: true }))
  await app.inject({ url: '/' })
  const refused = await app.inject({ url: '/' })
  t.same(seen, ['FST_MAESTRO_RL_RATE_LIMITED'])
  t.equal(refused.statusCode, 429)
  t.equal(refused.json().reason, 'rate_limit_exceeded')
})
