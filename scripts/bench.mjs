// Benchmark: what @maestro/rate-limiting costs per request, measured against bare Fastify in the
// same run. Every server runs in a child process of its own, so the load generator (autocannon, in
// this process) and the server under test never share an event loop. Scenarios are interleaved in
// rounds (in a rotating order) and each ratio compares a scenario with bare Fastify of the same
// round, so drift of the machine during the run cancels out.
//
//   BENCH_DURATION     seconds per scenario and round (default 5)
//   BENCH_ROUNDS       rounds (default 5)
//   BENCH_CONNECTIONS  concurrent connections (default 50)
//   BENCH_WARMUP       seconds of warm-up per scenario before the first round (default 2)
//   REDIS_URL          Redis of the redis scenarios (default redis://127.0.0.1:6379)
//
// The plugin scenarios use one tenant in a tier whose limits are never reached, with a finite
// concurrency limit so every request takes and gives back a lease: the full admission path runs,
// and any non-2xx answer fails the run.
import { fork } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import os from 'node:os'
import { createHistogram } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import rateLimiting from '../dist/index.js'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const ROUTE = '/bench'
const BENCH_TIER = {
  requestsPerMinute: 1_000_000_000,
  requestsPerHour: 1_000_000_000,
  concurrentRequests: 10_000,
  monthlyQuota: 1_000_000_000_000
}

const SCENARIOS = [
  { name: 'bare', label: 'bare Fastify', store: null },
  { name: 'memory', label: 'plugin, memory store', store: 'memory' },
  { name: 'redis', label: 'plugin, Redis store', store: 'redis' },
  { name: 'redis-pipelined', label: 'plugin, Redis store, enableAutoPipelining', store: 'redis' }
]

if (process.argv[2] === '--serve') {
  await serve(process.argv[3])
} else {
  process.exitCode = await main()
}

// ---------------------------------------------------------------------------------------------
// Child: one server, port reported to the parent over IPC.

async function serve (scenarioName) {
  const scenario = SCENARIOS.find((s) => s.name === scenarioName)
  if (scenario === undefined || typeof process.send !== 'function') {
    console.error(`bench server: unknown scenario ${scenarioName} or no parent`)
    process.exit(1)
  }
  let redis
  const app = Fastify({ logger: false })
  try {
    if (scenario.store === 'redis') {
      redis = new Redis(REDIS_URL, {
        lazyConnect: true,
        maxRetriesPerRequest: 1,
        connectTimeout: 3000,
        enableAutoPipelining: scenario.name === 'redis-pipelined'
      })
      redis.on('error', () => {}) // a failed connect rejects below; the run fails on non-2xx
      await redis.connect()
      app.addHook('onClose', async () => { await redis.quit() })
    }
    if (scenario.store !== null) {
      const tenant = { tenantId: 'bench-tenant', tier: 'bench' }
      await app.register(rateLimiting, {
        redis,
        keyPrefix: process.env.BENCH_KEY_PREFIX + ':' + scenario.name,
        tiers: { bench: BENCH_TIER },
        tenantExtractor: () => tenant
      })
    }
    app.get(ROUTE, async () => ({ ok: true }))
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
}

// ---------------------------------------------------------------------------------------------
// Parent: start the servers, warm up, run the rounds, print the table.

async function main () {
  const settings = {
    duration: envInteger('BENCH_DURATION', 5, 1, 600),
    rounds: envInteger('BENCH_ROUNDS', 5, 1, 50),
    connections: envInteger('BENCH_CONNECTIONS', 50, 1, 10_000),
    warmup: envInteger('BENCH_WARMUP', 2, 0, 600)
  }
  if (Object.values(settings).includes(null)) return 2

  const loadBefore = os.loadavg()[0]
  const keyPrefix = `maestro-bench-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`
  const children = []
  const problems = []
  let redis

  // Bounded: everything must be over well within this budget, or the run fails.
  const perMeasure = settings.duration + 10
  const budgetMs = 1000 * (60 + SCENARIOS.length * (settings.warmup + 10 + settings.rounds * perMeasure))
  const watchdog = setTimeout(() => {
    console.error(`bench: did not finish within ${Math.round(budgetMs / 1000)} s, giving up`)
    for (const child of children) child.process.kill('SIGKILL')
    process.exit(1)
  }, budgetMs)
  const onSignal = (signal) => {
    console.error(`bench: ${signal}, stopping`)
    for (const child of children) child.process.kill('SIGKILL')
    // Best effort, bounded: remove what this run wrote, then leave.
    setTimeout(() => process.exit(130), 3000).unref()
    const cleanup = redis?.status === 'ready' ? deleteKeys(redis, keyPrefix + ':*') : Promise.resolve()
    cleanup.catch(() => {}).finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  try {
    redis = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 3000, retryStrategy: () => null })
    let connectError
    redis.on('error', (err) => { connectError ??= err })
    try {
      await redis.connect()
    } catch (err) {
      console.error(`bench: no Redis at ${redactUrl(REDIS_URL)} (${(connectError ?? err).message}); start one or set REDIS_URL`)
      return 1
    }
    const redisVersion = /redis_version:(\S+)/.exec(await redis.info('server'))?.[1] ?? 'unknown'

    for (const scenario of SCENARIOS) {
      const child = await startServer(scenario, keyPrefix)
      children.push(child)
      await checkServer(child)
      log(`${scenario.name}: listening on 127.0.0.1:${child.port} (pid ${child.process.pid}, store ${child.store ?? 'none'})`)
    }

    if (settings.warmup > 0) {
      for (const child of children) {
        log(`warm-up ${child.scenario.name} (${settings.warmup} s)`)
        await load(child, settings.warmup, settings.connections)
      }
    }

    // results[scenario name] = one measurement per round
    const results = Object.fromEntries(SCENARIOS.map((s) => [s.name, []]))
    for (let round = 0; round < settings.rounds; round++) {
      // Rotate the order so that no scenario always runs first or last in a round.
      const order = children.map((_, i) => children[(i + round) % children.length])
      for (const child of order) {
        const m = await load(child, settings.duration, settings.connections)
        results[child.scenario.name].push(m)
        log(`round ${round + 1}/${settings.rounds} ${child.scenario.name}: ${Math.round(m.rps)} req/s, ` +
          `p50 ${ms(m.p50)} ms, p99 ${ms(m.p99)} ms, non-2xx ${m.non2xx}, errors ${m.errors}`)
        if (m.non2xx > 0) problems.push(`${child.scenario.name}, round ${round + 1}: ${m.non2xx} non-2xx responses ${JSON.stringify(m.statusCodes)}`)
        if (m.errors > 0 || m.timeouts > 0) problems.push(`${child.scenario.name}, round ${round + 1}: ${m.errors} errors, ${m.timeouts} timeouts`)
        if (child.process.exitCode !== null || child.process.signalCode !== null) problems.push(`${child.scenario.name}: server exited during the run`)
      }
    }

    // The Redis scenarios must have written under their prefixes; then those keys go.
    const deleted = await deleteKeys(redis, keyPrefix + ':*')
    if (deleted === 0) problems.push('no Redis keys were written under the run\'s prefix: the redis scenarios did not use Redis')

    printReport(results, settings, { redisVersion, keyPrefix, deleted, load: [loadBefore, os.loadavg()[0]] })
  } catch (err) {
    problems.push(err.message)
  } finally {
    clearTimeout(watchdog)
    await Promise.all(children.map(stopServer))
    if (redis !== undefined && redis.status === 'ready') {
      // Normally already done above; this covers a run that failed half-way.
      await deleteKeys(redis, keyPrefix + ':*').catch(() => {})
      await redis.quit().catch(() => {})
    } else {
      redis?.disconnect()
    }
  }

  if (problems.length > 0) {
    console.error('\nbench FAILED:\n  ' + problems.join('\n  '))
    return 1
  }
  return 0
}

function envInteger (name, fallback, min, max) {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isInteger(value) || value < min || value > max) {
    console.error(`bench: ${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(raw)}`)
    return null
  }
  return value
}

function log (message) {
  console.error(`[bench] ${message}`)
}

function startServer (scenario, keyPrefix) {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', scenario.name], {
    env: { ...process.env, REDIS_URL, BENCH_KEY_PREFIX: keyPrefix },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${scenario.name}: server did not start within 15 s`))
    }, 15_000)
    child.once('message', (message) => {
      clearTimeout(timer)
      child.removeAllListeners('exit')
      if (message.error !== undefined) {
        reject(new Error(`server failed to start: ${message.error}`))
      } else {
        resolve({ scenario, process: child, port: message.port, store: message.store })
      }
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${scenario.name}: server exited before listening (${signal ?? code})`))
    })
  })
}

async function stopServer (child) {
  const proc = child.process
  if (proc.exitCode !== null || proc.signalCode !== null) return
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  proc.kill('SIGTERM')
  const timer = setTimeout(() => proc.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

/** One request before any load: the right status, and the plugin's headers where it is registered. */
async function checkServer (child) {
  const { scenario } = child
  if (child.store !== scenario.store) throw new Error(`${scenario.name}: expected store ${scenario.store}, server reports ${child.store}`)
  const response = await fetch(`http://127.0.0.1:${child.port}${ROUTE}`, { signal: AbortSignal.timeout(5000) })
  await response.arrayBuffer()
  if (response.status !== 200) throw new Error(`${scenario.name}: GET ${ROUTE} answered ${response.status}`)
  const limit = response.headers.get('x-ratelimit-concurrent-limit')
  const expected = scenario.store === null ? null : String(BENCH_TIER.concurrentRequests)
  if (limit !== expected) throw new Error(`${scenario.name}: x-ratelimit-concurrent-limit is ${limit}, expected ${expected}`)
}

async function load (child, duration, connections) {
  const run = autocannon({
    url: `http://127.0.0.1:${child.port}${ROUTE}`,
    connections,
    duration,
    timeout: 10
  })
  // autocannon's own latency histogram has whole-millisecond resolution; this one keeps microseconds.
  const latency = createHistogram()
  run.on('response', (_client, _status, _bytes, ms) => latency.record(Math.max(1, Math.round(ms * 1000))))
  const result = await run
  return {
    rps: result.requests.average,
    p50: latency.count === 0 ? NaN : latency.percentile(50) / 1000,
    p99: latency.count === 0 ? NaN : latency.percentile(99) / 1000,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => [code, Number(count)]))
  }
}

async function deleteKeys (redis, pattern) {
  let cursor = '0'
  let deleted = 0
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    // One key per DEL: on Redis Cluster the keys of one batch may live in different slots.
    for (const key of keys) deleted += await redis.del(key)
  } while (cursor !== '0')
  return deleted
}

function ms (value) {
  return value.toFixed(2)
}

function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function printReport (results, settings, { redisVersion, keyPrefix, deleted, load }) {
  const bare = results.bare
  const cpus = os.cpus()
  const lines = [
    '',
    `Node ${process.version}, ${cpus[0]?.model?.trim() ?? 'unknown CPU'} × ${cpus.length}, ${os.platform()} ${os.release()}, Redis ${redisVersion} on ${redactUrl(REDIS_URL)}`,
    `${settings.rounds} rounds × ${SCENARIOS.length} scenarios × ${settings.duration} s, ${settings.connections} connections, ` +
      `${settings.warmup} s warm-up; medians over rounds; ratio = req/s ÷ bare Fastify req/s of the same round (range over rounds)`,
    `servers in child processes on 127.0.0.1; autocannon in the parent; ${deleted} Redis keys under ${keyPrefix}:* deleted`,
    `1-minute load average ${load[0].toFixed(2)} before, ${load[1].toFixed(2)} after (other work on the machine skews absolute numbers more than ratios)`,
    '',
    '| scenario | req/s | p50 (ms) | p99 (ms) | vs bare Fastify | non-2xx |',
    '|---|---:|---:|---:|---:|---:|'
  ]
  for (const scenario of SCENARIOS) {
    const runs = results[scenario.name]
    const ratios = runs.map((m, round) => m.rps / bare[round].rps)
    const spread = ratios.length > 1 && scenario.name !== 'bare' ? ` (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})` : ''
    const non2xx = runs.reduce((sum, m) => sum + m.non2xx, 0)
    lines.push(`| ${scenario.label} | ${Math.round(median(runs.map((m) => m.rps)))} | ` +
      `${ms(median(runs.map((m) => m.p50)))} | ${ms(median(runs.map((m) => m.p99)))} | ${median(ratios).toFixed(2)}×${spread} | ${non2xx} |`)
  }
  console.log(lines.join('\n'))
}

function redactUrl (url) {
  try {
    const parsed = new URL(url)
    if (parsed.password !== '') parsed.password = '***'
    return parsed.toString()
  } catch {
    return 'the configured Redis'
  }
}
