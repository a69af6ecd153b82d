// One benchmark server in a child process of its own: `node scripts/bench/server.mjs <scenario>`,
// forked by scripts/bench.mjs. Reports its port over IPC; stops on SIGTERM or when the parent goes.
//   REDIS_URL          the Redis of the redis scenarios
//   BENCH_CLUSTER      the loopback ports of the Redis Cluster's masters, comma-separated (cluster scenarios)
//   BENCH_KEY_PREFIX   the run's key prefix; this scenario writes under `<prefix>:<scenario>:`
//   BENCH_BASELINE     the checkout whose plugin the baseline-* scenarios run
import { pathToFileURL } from 'node:url'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { clusterClient } from './cluster.mjs'
import { HOT_TENANT, OPEN_TIER, OVER_LIMIT_TIER, PEER_MAX, PROBE_SCRIPT, ROUTE, SCENARIOS, TENANT_HEADER, scenarioPrefix } from './scenarios.mjs'

const scenario = SCENARIOS.find((s) => s.name === process.argv[2])
if (scenario === undefined || typeof process.send !== 'function') {
  console.error(`bench server: unknown scenario ${process.argv[2]} or no parent`)
  process.exit(1)
}
const prefix = scenarioPrefix(process.env.BENCH_KEY_PREFIX, scenario.name)

// How each kind of server is set up, before its route.
const SETUP = {
  async bare () {},

  async plugin (app) {
    const from = scenario.baseline === true ? pathToFileURL(`${process.env.BENCH_BASELINE}/dist/index.js`).href : '../../dist/index.js'
    const { default: rateLimiting } = await import(from)
    const tier = scenario.tier ?? 'bench'
    // The levels scenario: the tenant is a member of an organization held to limits of its own.
    const hot = Object.freeze(scenario.levels === true ? { tenantId: HOT_TENANT, tier, organizationId: 'bench-org', organizationTier: 'bench' } : { tenantId: HOT_TENANT, tier })
    await app.register(rateLimiting, {
      redis, // undefined: the memory store
      keyPrefix: prefix,
      tiers: { bench: OPEN_TIER, 'bench-over': OVER_LIMIT_TIER },
      // A decision Redis did not make in time (its deadline passed, the breaker open) is a 503 that
      // fails the run, not a 200 that would count as a limited request (the default fails open).
      failMode: 'closed',
      metrics: scenario.metrics === false ? false : undefined, // default: on (prom-client is installed)
      headers: scenario.headers, // undefined: the default set
      ...(scenario.alerts === false ? { quotaAlerts: false } : {}),
      tenantExtractor: scenario.tenants === undefined
        ? () => hot
        : (request) => ({ tenantId: request.headers[TENANT_HEADER] ?? HOT_TENANT, tier })
    })
  },

  async frl (app) {
    const { default: fastifyRateLimit } = await import('@fastify/rate-limit')
    await app.register(fastifyRateLimit, {
      max: PEER_MAX,
      timeWindow: 60_000,
      // One key, like this plugin's hot tenant; or the tenant header, like this plugin's tenants.
      keyGenerator: scenario.tenants === undefined ? () => HOT_TENANT : (request) => request.headers[TENANT_HEADER] ?? HOT_TENANT,
      ...(redis === undefined ? {} : { redis, nameSpace: prefix + ':' })
    })
  },

  async rlf (app) {
    const { RateLimiterRedis } = await import('rate-limiter-flexible')
    const limiter = new RateLimiterRedis({ storeClient: redis, keyPrefix: prefix, points: PEER_MAX, duration: 60 })
    // The usual hook: consume, then the headers @fastify/rate-limit sends too; a RateLimiterRes
    // rejection is a 429, an Error is the store failing.
    app.addHook('onRequest', async (_request, reply) => {
      try {
        const res = await limiter.consume(HOT_TENANT)
        reply.header('x-ratelimit-limit', PEER_MAX)
        reply.header('x-ratelimit-remaining', res.remainingPoints)
        reply.header('x-ratelimit-reset', Math.ceil(res.msBeforeNext / 1000))
      } catch (res) {
        if (res instanceof Error) throw res
        reply.code(429).header('retry-after', Math.ceil(res.msBeforeNext / 1000))
        return reply.send({ statusCode: 429, error: 'Too Many Requests' })
      }
    })
  },

  // The over-limit scenario's answer without the limiter: the plugin (memory store, same tier)
  // answers in-process until it refuses, and that 429's headers and body are sent to every request.
  async replay429 (app) {
    const { default: rateLimiting } = await import('../../dist/index.js')
    const source = Fastify({ logger: false })
    await source.register(rateLimiting, { tiers: { 'bench-over': OVER_LIMIT_TIER }, tenantExtractor: () => ({ tenantId: HOT_TENANT, tier: 'bench-over' }), metrics: false })
    source.get(ROUTE, async () => ({ ok: true }))
    let refused
    for (let i = 0; i <= OVER_LIMIT_TIER.requestsPerMinute && refused === undefined; i++) {
      const res = await source.inject({ url: ROUTE })
      if (res.statusCode === 429) refused = res
    }
    await source.close()
    if (refused === undefined) throw new Error('the plugin never refused')
    const skip = new Set(['date', 'connection', 'keep-alive', 'content-length', 'transfer-encoding'])
    const headers = Object.entries(refused.headers).filter(([name]) => !skip.has(name))
    const body = refused.body
    app.addHook('onRequest', async (_request, reply) => {
      reply.code(429)
      for (const [name, value] of headers) reply.header(name, value)
      return reply.send(body)
    })
  },

  async probe (app) {
    const sha = await redis.script('LOAD', PROBE_SCRIPT)
    const key = prefix + ':probe'
    app.addHook('onRequest', async () => { await redis.evalsha(sha, 1, key) })
  }
}

let redis
const app = Fastify({ logger: false })
try {
  if (scenario.store === 'redis') {
    // The same client settings for every library (@fastify/rate-limit's docs advise a short connect
    // timeout and few retries), on a Cluster for each master's connection; only the probe scenario
    // turns on auto-pipelining.
    const settings = { maxRetriesPerRequest: 1, connectTimeout: 3000 }
    redis = scenario.cluster === true
      ? clusterClient(process.env.BENCH_CLUSTER.split(',').map(Number), settings, scenario.autoPipelining === true)
      : new Redis(process.env.REDIS_URL, { lazyConnect: true, ...settings, enableAutoPipelining: scenario.autoPipelining === true })
    redis.on('error', () => {}) // a failed connect rejects below; the run fails on non-2xx
    await redis.connect()
    app.addHook('onClose', async () => { await redis.quit() })
  }
  await SETUP[scenario.kind](app)
  if (scenario.settle === true) {
    // A cost known in two steps: 2 reserved by the route's cost function, 3 counted once the handler knows.
    app.get(ROUTE, { config: { rateLimit: { cost: () => 2 } } }, async (request) => {
      request.rateLimit?.settle(3)
      return { ok: true }
    })
  } else if (scenario.levels === true) {
    // And a shared budget on the route, across every tenant: two more levels in the one decision.
    app.get(ROUTE, { config: { rateLimit: { shared: { name: 'bench-downstream', requestsPerMinute: PEER_MAX, concurrentRequests: 10_000 } } } }, async () => ({ ok: true }))
  } else {
    app.get(ROUTE, async () => ({ ok: true }))
  }
  await app.listen({ port: 0, host: '127.0.0.1' })
} catch (err) {
  process.send({ error: `${scenario.name}: ${err.message}` })
  redis?.disconnect()
  process.exit(1)
}

let closing = false
const shutdown = () => {
  if (closing) return
  closing = true
  const force = setTimeout(() => process.exit(1), 5000)
  force.unref()
  app.close().then(() => process.exit(0), () => process.exit(1))
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', () => {}) // Ctrl-C reaches the whole group; the parent decides
process.on('disconnect', shutdown) // the parent is gone
process.send({ port: app.server.address().port, store: app.hasDecorator('rateLimitStore') ? app.rateLimitStore.kind : null })
