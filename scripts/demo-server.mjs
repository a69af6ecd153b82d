// Demo service for `npm start`: a few routes behind @maestro/rate-limiting, with API keys for each
// tier, so the limits, the headers and the 429 answers can be tried with curl.
//
//   PORT       listen port (default 3000)
//   HOST       listen address (default 127.0.0.1)
//   REDIS_URL  share counters through Redis (e.g. redis://127.0.0.1:6379); unset: in-memory store
//   CONSOLE_PASSWORD  the operator console's password (user `operator`; default `demo-console`)
import { timingSafeEqual } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import rateLimiting from '../dist/index.js'
import rateLimitAdmin from '../dist/admin.js'

const PORT = Number(process.env.PORT ?? 3000)
const HOST = process.env.HOST ?? '127.0.0.1'
const REDIS_URL = process.env.REDIS_URL ?? ''
const CONSOLE_PASSWORD = process.env.CONSOLE_PASSWORD ?? 'demo-console'

// API key → tenant. A missing or unknown key is an anonymous client, counted by its address.
// Two keys of one customer share its organization's limits (the "starter" tier: 10 a minute in all).
const API_KEYS = {
  'demo-starter': { tenantId: 'acme', tier: 'starter' },
  'demo-team-a': { tenantId: 'hooli-a', tier: 'professional', organizationId: 'hooli', organizationTier: 'starter' },
  'demo-team-b': { tenantId: 'hooli-b', tier: 'professional', organizationId: 'hooli', organizationTier: 'starter' },
  'demo-pro': { tenantId: 'globex', tier: 'professional' },
  'demo-enterprise': { tenantId: 'initech', tier: 'enterprise' },
  'demo-admin': { tenantId: 'ops', tier: 'platform_admin' }
}

const app = Fastify({ logger: true })

let redis
if (REDIS_URL !== '') {
  // Fail fast when Redis is unreachable instead of queueing commands behind a dead connection.
  redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000 })
  redis.on('error', (err) => app.log.warn({ err }, 'redis connection error'))
  try {
    await redis.connect()
  } catch (err) {
    app.log.fatal({ err }, 'cannot reach Redis at %s', REDIS_URL)
    redis.disconnect()
    process.exit(1)
  }
  app.log.info('REDIS_URL set: counters are shared through Redis at %s', REDIS_URL)
  // The plugin never closes a client it was given; this one is ours.
  app.addHook('onClose', async () => { await redis.quit() })
} else {
  app.log.warn('no REDIS_URL: using the in-memory store (single process)')
}

/** The tenant of a request's API key; null (anonymous) without a known one. */
function tenantOf (request) {
  const key = request.headers['x-api-key']
  if (typeof key !== 'string') return null
  return Object.hasOwn(API_KEYS, key) ? API_KEYS[key] : null
}

await app.register(rateLimiting, {
  ...(redis === undefined ? { store: 'memory' } : { redis }),
  keyPrefix: 'maestro-demo',
  ietfHeaders: true,
  tenantExtractor: async (request) => tenantOf(request),
  // Quota alerts at 80 %, 90 % and 100 % of a monthly quota, once each per tenant and month.
  quotaAlerts: { onAlert: (event) => app.log.info({ alert: event }, 'quota alert: %s at %d%% of its quota', event.tenantId, event.threshold * 100) }
})

const base = `http://${HOST.includes(':') ? `[${HOST}]` : HOST}:${PORT}`

// The admin routes and the operator console, for operators signed in with HTTP Basic (a real
// service would check its own sign-in: a session cookie, its SSO proxy's header).
const expected = Buffer.from('operator:' + CONSOLE_PASSWORD)
await app.register(rateLimitAdmin, {
  prefix: '/admin/rate-limits',
  authorize: async (request, reply) => {
    const header = request.headers.authorization ?? ''
    const given = Buffer.from(header.startsWith('Basic ') ? Buffer.from(header.slice(6), 'base64').toString() : '')
    if (given.length === expected.length && timingSafeEqual(given, expected)) return
    reply.code(401).header('www-authenticate', 'Basic realm="rate-limit console", charset="UTF-8"').send({ statusCode: 401, error: 'Unauthorized', message: 'operators only' })
  }
})

// Not limited itself (so it can always be read), and describes how to try the others.
app.get('/', { config: { rateLimit: false } }, async () => ({
  service: '@maestro/rate-limiting demo',
  store: app.rateLimitStore.kind,
  apiKeys: Object.fromEntries(Object.entries(API_KEYS).map(([key, id]) => [key, `${id.tenantId} (${id.tier})`])),
  anonymous: 'no x-api-key header, or an unknown one: tier anonymous, counted per client address',
  console: `${base}/admin/rate-limits/ui/ (user operator, password ${process.env.CONSOLE_PASSWORD === undefined ? CONSOLE_PASSWORD : 'from CONSOLE_PASSWORD'})`,
  tiers: {
    anonymous: '5/min, 50/hour, 5 concurrent, 1000/month',
    starter: '10/min, 100/hour, 10 concurrent, 10000/month',
    professional: '50/min, 1000/hour, 50 concurrent, 100000/month',
    enterprise: '500/min, 10000/hour, 200 concurrent, 1000000/month',
    platform_admin: 'unlimited'
  },
  routes: {
    'GET /': 'this page (not limited)',
    'GET /hello': 'costs 1 request from the tenant\'s shared counters',
    'GET /reports': 'costs 5 requests from the tenant\'s shared counters',
    'GET /search': 'counted in a bucket of its own ("search"): does not use up the shared counters',
    'GET /slow': 'answers after about 2 s; at most 2 at a time per tenant (platform_admin: no limit)',
    'GET /generate?words=n': 'reserves 3 from the tenant\'s shared counters, then settles at the words it "generated" (n, default 1): the difference is counted after the response',
    'GET /quota': 'what the tenant has left, read with fastify.rateLimiter.peek (consumes nothing)',
    'GET /render': 'a fragile downstream: at most 2 renders in flight across every caller (a shared route budget), about 2 s each',
    'GET /health': 'never limited nor counted'
  },
  try: [
    `curl -i ${base}/hello`,
    `for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code}\\n' ${base}/hello; done`,
    `curl -i -H 'x-api-key: demo-starter' ${base}/reports`,
    `curl -i -H 'x-api-key: demo-pro' ${base}/search`,
    `for i in 1 2 3; do curl -s -H 'x-api-key: demo-starter' ${base}/slow & done; wait`,
    `curl -i -H 'x-api-key: demo-admin' ${base}/reports`,
    `curl -s -H 'x-api-key: demo-starter' '${base}/generate?words=6' && curl -s -H 'x-api-key: demo-starter' ${base}/quota`,
    `for i in 1 2 3 4 5 6; do curl -s -o /dev/null -w '%{http_code} ' -H 'x-api-key: demo-team-a' ${base}/hello; curl -s -o /dev/null -w '%{http_code}\n' -H 'x-api-key: demo-team-b' ${base}/hello; done`,
    `for k in demo-starter demo-pro demo-enterprise; do curl -s -o /dev/null -w '%{http_code} %header{x-ratelimit-scope}\n' -H "x-api-key: $k" ${base}/render & done; wait`,
    `curl -i ${base}/health`
  ],
  headers: 'x-ratelimit-* on every limited answer; RateLimit-Policy and RateLimit (IETF draft) too; Retry-After on a 429'
}))

app.get('/hello', async (request) => ({
  hello: request.rateLimit.anonymous ? 'anonymous client' : request.rateLimit.subject,
  tier: request.rateLimit.tier
}))

app.get('/reports', { config: { rateLimit: { cost: 5 } } }, async (request) => ({
  tenant: request.rateLimit.subject,
  cost: request.rateLimit.cost,
  reports: [
    { id: 'r-101', title: 'Monthly usage', rows: 1284 },
    { id: 'r-102', title: 'Error budget', rows: 96 }
  ]
}))

app.get('/search', { config: { rateLimit: { bucket: 'search' } } }, async (request) => {
  const q = typeof request.query.q === 'string' ? request.query.q : ''
  return { bucket: request.rateLimit.bucket, q, results: q === '' ? [] : [`${q} guide`, `${q} reference`] }
})

app.get('/slow', {
  config: {
    rateLimit: {
      bucket: 'slow',
      limits: { requestsPerMinute: 60, concurrentRequests: 2 },
      tiers: { platform_admin: { requestsPerMinute: null, concurrentRequests: null } }
    }
  }
}, async (request) => {
  await sleep(2000)
  return { done: true, tier: request.rateLimit.tier, waitedMs: 2000 }
})

app.get('/generate', { config: { rateLimit: { cost: 3 } } }, async (request) => {
  // The real cost is known only once the work is done: settle it; the plugin counts the difference.
  const words = Math.min(Math.max(Number.parseInt(String(request.query.words ?? '1'), 10) || 0, 0), 50)
  request.rateLimit.settle(words)
  return { reserved: request.rateLimit.cost, settledAt: words, text: Array.from({ length: words }, (_, i) => `word${i + 1}`).join(' ') }
})

app.get('/quota', { config: { rateLimit: false } }, async (request) => {
  const tenant = tenantOf(request)
  const identity = tenant === null ? { anonymous: request.ip } : tenant
  const now = await app.rateLimiter.peek(identity, { cost: 0 })
  return { minuteLeft: now.minute.remaining, hourLeft: now.hour.remaining, monthLeft: now.month.remaining }
})

app.get('/render', { config: { rateLimit: { shared: { name: 'renderer', concurrentRequests: 2 } } } }, async (request) => {
  await sleep(2000)
  return { rendered: true, for: request.rateLimit.subject }
})

app.get('/health', { config: { rateLimit: false } }, async () => ({ status: 'ok' }))

let closing = false
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'shutting down')
    app.close().then(() => process.exit(0), (err) => {
      app.log.error({ err }, 'shutdown failed')
      process.exit(1)
    })
  })
}

try {
  await app.listen({ port: PORT, host: HOST })
  app.log.info('try: curl -s %s/ (how to use this demo)', base)
  app.log.info('operator console: %s/admin/rate-limits/ui/ (user operator)', base)
} catch (err) {
  app.log.fatal({ err }, 'cannot listen on %s:%d', HOST, PORT)
  await app.close().catch(() => {})
  process.exit(1)
}
