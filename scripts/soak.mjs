// Soak test: HTTP traffic over a real listener for a set time while a private redis-server under the
// plugin is killed and restarted (a crash) and paused (a hung Redis), again and again. Afterwards it
// checks that no request got a 5xx, nothing went unhandled and no concurrency lease was left behind,
// and prints the results, ending with a markdown table for the docs.
//
//   npm run build && node scripts/soak.mjs [--seconds N]
//
//   SOAK_SECONDS       how long traffic runs, in seconds (default 60; --seconds wins)
//   SOAK_CONNECTIONS   concurrent client connections (default 32)
//   SOAK_FAULT_EVERY   seconds of healthy Redis between two faults (default 3)
//   SOAK_SETTLE        seconds to wait after traffic before counting leases (default 3)
//   SOAK_MAX_REQUESTS  stop the traffic earlier after this many requests (default 5,000,000)
//   SOAK_SEED          seed of the traffic mix (default 1)
//   SOAK_LOG_LEVEL     Fastify log level (default: no logs)
//
// Exit status 1 when a request got a 5xx, a rejection went unhandled or an exception uncaught, a
// lease is left in Redis or the in-flight lease gauge is not back to 0.
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { Registry } from 'prom-client'
import rateLimiting from '../dist/index.js'
import { freePort, waitForRedis } from './loopback-redis.mjs'

// ---------------------------------------------------------------------------------------------
// Settings

const { values: args } = parseArgs({ options: { seconds: { type: 'string' } }, strict: true })
const SECONDS = positive('--seconds / SOAK_SECONDS', args.seconds ?? process.env.SOAK_SECONDS ?? '60')
const CONNECTIONS = Math.round(positive('SOAK_CONNECTIONS', process.env.SOAK_CONNECTIONS ?? '32'))
const FAULT_EVERY_MS = positive('SOAK_FAULT_EVERY', process.env.SOAK_FAULT_EVERY ?? '3') * 1000
const SETTLE_MS = positive('SOAK_SETTLE', process.env.SOAK_SETTLE ?? '3') * 1000
const MAX_REQUESTS = Math.round(positive('SOAK_MAX_REQUESTS', process.env.SOAK_MAX_REQUESTS ?? '5000000'))
const SEED = Math.round(positive('SOAK_SEED', process.env.SOAK_SEED ?? '1'))
const LOG_LEVEL = process.env.SOAK_LOG_LEVEL

/** Redis stays down this long after SIGKILL before it is started again on the same port. */
const KILLED_MS = 1000
/** Redis stays stopped (SIGSTOP) this long before SIGCONT. */
const PAUSED_MS = 1500
/** Faults stop this long before the traffic does, so the last requests meet a healthy Redis. */
const QUIET_TAIL_MS = 2000
/** A request without an answer after this long counts as a connection error. */
const REQUEST_TIMEOUT_MS = 10_000
const HOST = '127.0.0.1'
const KEY_PREFIX = 'soak'

function positive (name, text) {
  const value = Number(text)
  if (!Number.isFinite(value) || value <= 0) {
    console.error(`${name} must be a positive number (got ${JSON.stringify(text)})`)
    process.exit(2)
  }
  return value
}

// Tiers with limits high enough that nearly everything is admitted, except `capped`, whose tenant
// sends far more than its minute allows. Tiers with a concurrency limit take a lease per request.
const TIERS = {
  gold: { requestsPerMinute: 10_000_000, requestsPerHour: null, concurrentRequests: 40, monthlyQuota: null },
  silver: { requestsPerMinute: 5_000_000, requestsPerHour: 50_000_000, concurrentRequests: 24, monthlyQuota: 100_000_000 },
  bronze: { requestsPerMinute: 5_000_000, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null },
  capped: { requestsPerMinute: 120, requestsPerHour: null, concurrentRequests: 4, monthlyQuota: null }
}

// API key → tenant, with the share of the traffic each key sends.
const TENANTS = [
  { key: 'k-gold', tenantId: 'gold-co', tier: 'gold', weight: 30 },
  { key: 'k-silver-1', tenantId: 'silver-one', tier: 'silver', weight: 20 },
  { key: 'k-silver-2', tenantId: 'silver-two', tier: 'silver', weight: 15 },
  { key: 'k-bronze', tenantId: 'bronze-co', tier: 'bronze', weight: 20 },
  { key: 'k-admin', tenantId: 'ops', tier: 'platform_admin', weight: 5 },
  { key: 'k-capped', tenantId: 'capped-co', tier: 'capped', weight: 10 }
]
const BY_KEY = new Map(TENANTS.map(t => [t.key, t]))

// Paths with the share of the traffic each gets. /slow takes ~200 ms and has a concurrency limit of
// its own (in its own bucket), so every tier takes leases there.
const ROUTES = [
  { path: '/fast', weight: 50 },
  { path: '/work', weight: 35 },
  { path: '/report', weight: 13 },
  { path: '/slow', weight: 2 }
]

// ---------------------------------------------------------------------------------------------
// What went wrong outside the request path

const problems = { unhandledRejections: 0, uncaughtExceptions: 0 }
process.on('unhandledRejection', (reason) => {
  problems.unhandledRejections++
  console.error('unhandled rejection:', reason)
})
process.on('uncaughtException', (err) => {
  problems.uncaughtExceptions++
  console.error('uncaught exception:', err)
})

// ---------------------------------------------------------------------------------------------
// A private redis-server: ours alone, on a free loopback port, never 6379

class PrivateRedis {
  constructor (port, dir) {
    this.port = port
    this.dir = dir
    this.child = undefined
    this.exited = Promise.resolve()
    this.paused = false
  }

  get running () {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  async start () {
    const child = spawn('redis-server', [
      '--port', String(this.port), '--bind', HOST, '--save', '', '--appendonly', 'no', '--dir', this.dir
    ], { stdio: 'ignore' })
    this.child = child
    this.paused = false
    const failed = new Promise((resolve, reject) => child.once('error', reject))
    this.exited = new Promise(resolve => child.once('exit', () => resolve()))
    await Promise.race([failed, waitForRedis(this.port, child)])
  }

  /** SIGKILL, as a crash would; resolves once the process is gone. */
  async kill () {
    this.killNow()
    await this.exited
  }

  /** Synchronous, for exit handlers: only ever the pid this script started. */
  killNow () {
    if (!this.running) return
    if (this.paused) this.child.kill('SIGCONT')
    this.child.kill('SIGKILL')
  }

  pause () {
    this.child.kill('SIGSTOP')
    this.paused = true
  }

  resume () {
    this.child.kill('SIGCONT')
    this.paused = false
  }

  async version () {
    const client = this.probe()
    try {
      const info = await client.info('server')
      return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown'
    } finally {
      client.disconnect()
    }
  }

  probe () {
    const client = new Redis(this.port, HOST, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    client.on('error', () => {})
    return client
  }
}

const dir = mkdtempSync(join(tmpdir(), 'maestro-rl-soak-'))
const redisServer = new PrivateRedis(await freePort(), dir)

function cleanUp () {
  redisServer.killNow()
  rmSync(dir, { recursive: true, force: true })
}
process.on('exit', cleanUp)
for (const [signal, number] of [['SIGINT', 2], ['SIGTERM', 15], ['SIGHUP', 1]]) {
  process.once(signal, () => {
    console.error(`\n${signal}: stopping the private redis-server and leaving`)
    cleanUp()
    process.exit(128 + number)
  })
}

// ---------------------------------------------------------------------------------------------
// The app under test

async function buildApp (redis, registry) {
  const app = Fastify({ logger: LOG_LEVEL === undefined ? false : { level: LOG_LEVEL } })
  await app.register(rateLimiting, {
    redis,
    keyPrefix: KEY_PREFIX,
    tiers: TIERS,
    tenantExtractor: (request) => {
      const key = request.headers['x-api-key']
      const tenant = typeof key === 'string' ? BY_KEY.get(key) : undefined
      return tenant === undefined ? null : { tenantId: tenant.tenantId, tier: tenant.tier }
    },
    metrics: { registry }
  })
  app.get('/fast', async () => {
    await sleep(1)
    return { ok: true }
  })
  app.get('/work', async () => {
    await sleep(2 + Math.floor(Math.random() * 4))
    return { ok: true, items: [1, 2, 3] }
  })
  app.get('/report', { config: { rateLimit: { cost: 3 } } }, async () => {
    await sleep(5)
    return { ok: true, rows: 42 }
  })
  app.get('/slow', { config: { rateLimit: { bucket: 'slow', limits: { concurrentRequests: 12 } } } }, async () => {
    await sleep(200)
    return { ok: true, slow: true }
  })
  app.get('/health', { config: { rateLimit: false } }, async () => ({ status: 'ok' }))
  return app
}

// ---------------------------------------------------------------------------------------------
// Traffic

/** mulberry32: a small seeded generator, so two runs send the same mix. */
function random (seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

function picker (items, rand) {
  const total = items.reduce((sum, item) => sum + item.weight, 0)
  return () => {
    let r = rand() * total
    for (const item of items) {
      r -= item.weight
      if (r < 0) return item
    }
    return items[items.length - 1]
  }
}

/** Latencies in whole milliseconds, for percentiles without keeping every sample. */
class LatencyHistogram {
  constructor () {
    this.counts = new Uint32Array(REQUEST_TIMEOUT_MS + 2)
    this.n = 0
    this.max = 0
  }

  add (ms) {
    this.counts[Math.min(Math.ceil(ms), this.counts.length - 1)]++
    this.n++
    if (ms > this.max) this.max = ms
  }

  percentile (p) {
    const target = Math.ceil(this.n * p)
    let seen = 0
    for (let ms = 0; ms < this.counts.length; ms++) {
      seen += this.counts[ms]
      if (seen >= target && seen > 0) return ms
    }
    return 0
  }
}

function request (agent, port, path, apiKey) {
  return new Promise(resolve => {
    const started = performance.now()
    let settled = false
    const done = (outcome) => {
      if (settled) return
      settled = true
      resolve({ ...outcome, ms: performance.now() - started })
    }
    const req = http.request({ agent, host: HOST, port, path, method: 'GET', headers: { 'x-api-key': apiKey }, timeout: REQUEST_TIMEOUT_MS }, res => {
      const degraded = res.headers['x-ratelimit-status'] === 'degraded'
      res.on('error', err => done({ error: err.code ?? err.message }))
      res.on('end', () => done({ status: res.statusCode, degraded }))
      res.resume()
    })
    req.on('timeout', () => req.destroy(Object.assign(new Error('no answer in time'), { code: 'CLIENT_TIMEOUT' })))
    req.on('error', err => done({ error: err.code ?? err.message }))
    req.end()
  })
}

const traffic = {
  sent: 0,
  statuses: new Map(),
  /** status → count, per tenant. */
  byTenant: new Map(TENANTS.map(t => [t.tenantId, new Map()])),
  connectionErrors: new Map(),
  degraded: 0,
  latency: { slow: new LatencyHistogram(), other: new LatencyHistogram() }
}

function bump (map, key) {
  map.set(key, (map.get(key) ?? 0) + 1)
}

async function drive (port, until) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS })
  const rand = random(SEED)
  const nextTenant = picker(TENANTS, rand)
  const nextRoute = picker(ROUTES, rand)
  const worker = async () => {
    while (Date.now() < until && traffic.sent < MAX_REQUESTS) {
      traffic.sent++
      const tenant = nextTenant()
      const route = nextRoute()
      const outcome = await request(agent, port, route.path, tenant.key)
      traffic.latency[route.path === '/slow' ? 'slow' : 'other'].add(outcome.ms)
      if (outcome.error !== undefined) {
        bump(traffic.connectionErrors, outcome.error)
        continue
      }
      bump(traffic.statuses, outcome.status)
      bump(traffic.byTenant.get(tenant.tenantId), outcome.status)
      if (outcome.degraded) traffic.degraded++
    }
  }
  await Promise.all(Array.from({ length: CONNECTIONS }, worker))
  agent.destroy()
}

// ---------------------------------------------------------------------------------------------
// Faults

const faults = { kills: 0, pauses: 0, log: [] }

async function injectFaults (server, startedAt, until) {
  let kill = true
  const longest = Math.max(KILLED_MS, PAUSED_MS)
  while (Date.now() + FAULT_EVERY_MS + longest + QUIET_TAIL_MS <= until) {
    await sleep(FAULT_EVERY_MS)
    const at = ((Date.now() - startedAt) / 1000).toFixed(1)
    if (kill) {
      await server.kill()
      faults.kills++
      await sleep(KILLED_MS)
      await server.start()
      faults.log.push(`t+${at}s SIGKILL, restarted after ${KILLED_MS} ms`)
    } else {
      server.pause()
      faults.pauses++
      await sleep(PAUSED_MS)
      server.resume()
      faults.log.push(`t+${at}s SIGSTOP, SIGCONT after ${PAUSED_MS} ms`)
    }
    console.log(`  fault: ${faults.log.at(-1)}`)
    kill = !kill
  }
}

// ---------------------------------------------------------------------------------------------
// Reading the results

async function metricValues (registry, name) {
  const metric = registry.getSingleMetric(name)
  return metric === undefined ? [] : (await metric.get()).values
}

async function metricSum (registry, name, filter = () => true) {
  return (await metricValues(registry, name)).filter(v => filter(v.labels)).reduce((sum, v) => sum + v.value, 0)
}

/** The decision histogram summed over its labels: count, sum and the bucket the slowest one fell in. */
async function decisionLatency (registry) {
  const values = await metricValues(registry, 'rate_limit_decision_duration_seconds')
  const buckets = new Map()
  let count = 0
  let sum = 0
  for (const v of values) {
    if (v.metricName.endsWith('_bucket')) buckets.set(String(v.labels.le), (buckets.get(String(v.labels.le)) ?? 0) + v.value)
    else if (v.metricName.endsWith('_count')) count += v.value
    else if (v.metricName.endsWith('_sum')) sum += v.value
  }
  const bounds = [...buckets.keys()].filter(le => le !== '+Inf').map(Number).sort((a, b) => a - b)
  // Cumulative buckets: the slowest decision lies at or below the first bound that holds them all.
  const upper = bounds.find(le => buckets.get(String(le)) >= count)
  const index = upper === undefined ? -1 : bounds.indexOf(upper)
  const lower = upper === undefined ? bounds.at(-1) : index > 0 ? bounds[index - 1] : 0
  return { count, sum, upper, lower }
}

async function leasesLeft (client) {
  let total = 0
  let keys = 0
  let cursor = '0'
  do {
    const [next, found] = await client.scan(cursor, 'MATCH', '*:c', 'COUNT', 500)
    cursor = next
    for (const key of found) {
      keys++
      total += await client.hlen(key)
    }
  } while (cursor !== '0')
  return { total, keys }
}

async function waitFor (condition, ms) {
  const until = Date.now() + ms
  while (Date.now() < until) {
    if (await condition()) return true
    await sleep(50)
  }
  return false
}

const ms = (seconds) => `${Math.round(seconds * 1000 * 10) / 10} ms`
const count = (n) => n.toLocaleString('en-US')
const statusList = (map) => [...map].sort(([a], [b]) => a - b).map(([status, n]) => `${status}: ${count(n)}`).join(', ') || 'none'

// ---------------------------------------------------------------------------------------------
// The run

let exitCode = 1
let app
let appRedis
let inspector
try {
  await redisServer.start()
  const redisVersion = await redisServer.version()
  console.log(`private redis-server ${redisVersion} on ${HOST}:${redisServer.port} (pid ${redisServer.child.pid})`)

  appRedis = new Redis(redisServer.port, HOST) // ioredis defaults: offline queue, reconnecting forever
  let clientErrors = 0
  appRedis.on('error', () => { clientErrors++ })
  const registry = new Registry()
  app = await buildApp(appRedis, registry)
  await app.listen({ port: 0, host: HOST })
  const appPort = app.server.address().port
  console.log(`app on http://${HOST}:${appPort}; ${SECONDS} s of traffic over ${CONNECTIONS} connections; a fault every ~${FAULT_EVERY_MS / 1000} s`)

  const loopDelay = monitorEventLoopDelay({ resolution: 10 })
  loopDelay.enable()
  const startedAt = Date.now()
  const until = startedAt + SECONDS * 1000
  const progress = setInterval(() => {
    const elapsed = (Date.now() - startedAt) / 1000
    console.log(`  t+${elapsed.toFixed(0)}s ${count(traffic.sent)} requests (${count(Math.round(traffic.sent / elapsed))}/s), redis client ${appRedis.status}`)
  }, 5000)
  progress.unref()
  await Promise.all([drive(appPort, until), injectFaults(redisServer, startedAt, until)])
  clearInterval(progress)
  loopDelay.disable()
  const trafficSeconds = (Date.now() - startedAt) / 1000

  // Redis is back (every fault ends with a restart or SIGCONT); let the client reconnect and the
  // last releases land, then look.
  const reconnected = await waitFor(async () => appRedis.status === 'ready', 10_000)
  await sleep(SETTLE_MS)

  inspector = redisServer.probe()
  await inspector.connect()
  const leases = await leasesLeft(inspector)
  const inFlight = await metricSum(registry, 'rate_limit_in_flight_leases')
  const storeErrors = await metricSum(registry, 'rate_limit_store_errors_total')
  const failOpen = await metricSum(registry, 'rate_limit_fail_decisions_total', l => l.mode === 'open')
  const decisions = await decisionLatency(registry)
  const limiterOutcomes = new Map()
  for (const v of await metricValues(registry, 'rate_limit_requests_total')) limiterOutcomes.set(v.labels.status, (limiterOutcomes.get(v.labels.status) ?? 0) + v.value)
  const rejections = new Map()
  for (const v of await metricValues(registry, 'rate_limit_rejections_total')) rejections.set(v.labels.reason, (rejections.get(v.labels.reason) ?? 0) + v.value)

  const served = [...traffic.statuses.values()].reduce((a, b) => a + b, 0)
  const ok = [...traffic.statuses].filter(([s]) => s >= 200 && s < 300).reduce((a, [, n]) => a + n, 0)
  const serverErrors = [...traffic.statuses].filter(([s]) => s >= 500).reduce((a, [, n]) => a + n, 0)
  const otherNon2xx = [...traffic.statuses].filter(([s]) => (s < 200 || s >= 300) && s !== 429 && s !== 403).reduce((a, [, n]) => a + n, 0)
  const connectionErrors = [...traffic.connectionErrors.values()].reduce((a, b) => a + b, 0)
  const capped = TENANTS.find(t => t.tier === 'capped')
  const cappedRejected = traffic.byTenant.get(capped.tenantId).get(429) ?? 0
  const othersRejected = (traffic.statuses.get(429) ?? 0) - cappedRejected
  const decisionMax = decisions.count === 0
    ? 'no decisions recorded'
    : decisions.upper === undefined
      ? `> ${ms(decisions.lower)} (above the largest bucket)`
      : `≤ ${ms(decisions.upper)} (bucket ${ms(decisions.lower)}–${ms(decisions.upper)})`
  const { slow, other } = traffic.latency

  const failures = []
  if (serverErrors > 0) failures.push(`${count(serverErrors)} responses with a 5xx`)
  if (problems.unhandledRejections > 0) failures.push(`${problems.unhandledRejections} unhandled rejections`)
  if (problems.uncaughtExceptions > 0) failures.push(`${problems.uncaughtExceptions} uncaught exceptions`)
  if (leases.total > 0) failures.push(`${leases.total} leases left in Redis`)
  if (inFlight !== 0) failures.push(`in-flight lease gauge at ${inFlight}`)
  if (!reconnected) failures.push('the app\'s Redis client did not reconnect')
  exitCode = failures.length === 0 ? 0 : 1

  console.log(`
Results
  traffic                 ${trafficSeconds.toFixed(1)} s, ${CONNECTIONS} connections, seed ${SEED}
  requests served         ${count(served)} (${count(Math.round(served / trafficSeconds))}/s), ${count(ok)} 2xx
  by status               ${statusList(traffic.statuses)}
  429 by whom             ${count(cappedRejected)} to ${capped.tenantId} (over its ${TIERS.capped.requestsPerMinute}/min on purpose), ${count(othersRejected)} to the others
  errors                  ${count(otherNon2xx)} non-2xx other than 429/403, ${count(connectionErrors)} connection errors${connectionErrors > 0 ? ` (${[...traffic.connectionErrors].map(([c, n]) => `${c}: ${n}`).join(', ')})` : ''}
  5xx                     ${count(serverErrors)}
  degraded answers        ${count(traffic.degraded)} (decided without Redis, x-ratelimit-status: degraded)
  decision latency        max ${decisionMax}; ${count(decisions.count)} decisions from Redis, mean ${decisions.count === 0 ? '-' : ms(decisions.sum / decisions.count)}
  client latency          routes of a few ms: p50 ${other.percentile(0.5)} ms, p99 ${other.percentile(0.99)} ms, max ${other.max.toFixed(1)} ms; /slow (~200 ms): p99 ${slow.percentile(0.99)} ms, max ${slow.max.toFixed(1)} ms
  event loop delay        max ${(loopDelay.max / 1e6).toFixed(1)} ms, p99 ${(loopDelay.percentile(99) / 1e6).toFixed(1)} ms (client and server share this process)
  limiter outcomes        ${[...limiterOutcomes].map(([s, n]) => `${s}: ${count(n)}`).join(', ')}
  rejections by reason    ${[...rejections].map(([r, n]) => `${r}: ${count(n)}`).join(', ') || 'none'}
  store errors            ${count(storeErrors)}
  fail-open decisions     ${count(failOpen)}
  faults injected         ${faults.kills + faults.pauses} (${faults.kills} SIGKILL + restart, ${faults.pauses} SIGSTOP/SIGCONT)
  redis client errors     ${count(clientErrors)} 'error' events on the app's ioredis client
  unhandled rejections    ${problems.unhandledRejections}
  uncaught exceptions     ${problems.uncaughtExceptions}
  leaked leases           ${leases.total} (leases in ${leases.keys} *:c keys, ${SETTLE_MS / 1000} s after traffic stopped)
  in-flight lease gauge   ${inFlight}
  result                  ${failures.length === 0 ? 'PASS' : 'FAIL: ' + failures.join('; ')}

| soak: \`node scripts/soak.mjs --seconds ${SECONDS}\` | result |
|---|---|
| traffic | ${trafficSeconds.toFixed(0)} s, ${CONNECTIONS} connections, Redis ${redisVersion} |
| faults injected | ${faults.kills + faults.pauses} (${faults.kills} SIGKILL + restart after ${KILLED_MS} ms, ${faults.pauses} SIGSTOP for ${PAUSED_MS} ms) |
| requests served | ${count(served)} (${count(Math.round(served / trafficSeconds))}/s) |
| by status | ${statusList(traffic.statuses)} (429: ${count(cappedRejected)} to the over-limit tenant, ${count(othersRejected)} others) |
| errors (5xx, other non-2xx, connection) | ${count(serverErrors)}, ${count(otherNon2xx - serverErrors)}, ${count(connectionErrors)} |
| max decision latency (histogram) | ${decisionMax} |
| max client latency | ${other.max.toFixed(0)} ms (few-ms routes), ${slow.max.toFixed(0)} ms (200 ms route) |
| event loop delay, max (client and app in one process) | ${(loopDelay.max / 1e6).toFixed(0)} ms |
| store errors / fail-open decisions | ${count(storeErrors)} / ${count(failOpen)} |
| unhandled rejections / uncaught exceptions | ${problems.unhandledRejections} / ${problems.uncaughtExceptions} |
| leaked leases after settle | ${leases.total} |
| in-flight lease gauge | ${inFlight} |
| result | ${failures.length === 0 ? 'pass' : 'FAIL'} |`)
} catch (err) {
  console.error('soak run failed:', err)
  exitCode = 1
} finally {
  inspector?.disconnect()
  await app?.close().catch(err => console.error('closing the app failed:', err))
  appRedis?.disconnect()
  await redisServer.kill()
}
process.exit(exitCode)
