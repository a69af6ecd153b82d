// Burst test: one tenant sends many requests at once, over real sockets, to a service whose
// handlers spend CPU, with Redis healthy. The limiter must hold under its own service's load: no
// window admits more than its limit, no decision is blamed on Redis (degraded) while Redis answers,
// and no more handlers run at once than the concurrency limit.
//
//   npm run build && node scripts/burst.mjs [--runs N] [--requests N] [--cpu-ms N] [--timeout-ms N]
//
// Each run prints two lines: the window burst (limit 50 a minute, `--requests` at once) and the
// concurrency burst (limit 5, as many clients). Exit status 1 when any run broke a limit.
// REDIS_URL picks the Redis (default redis://127.0.0.1:6379); every run uses keys of its own.
import { randomBytes } from 'node:crypto'
import { parseArgs } from 'node:util'
import { pathToFileURL } from 'node:url'
import { Worker } from 'node:worker_threads'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import rateLimiting from '../dist/index.js'

const WINDOW_LIMIT = 50
const CONCURRENCY_LIMIT = 5
const UNLIMITED = null

/** Spends `ms` of CPU on the event loop, as a handler that renders or parses would. */
function spin (ms) {
  const until = performance.now() + ms
  while (performance.now() < until);
}

/**
 * One burst against a fresh service: `requests` GETs sent at once, each from its own connection.
 * Returns how many were admitted, refused and marked degraded, and the most handlers running at once.
 */
export async function burst ({ redisUrl, requests, limits, cpuMs, holdMs = 0, storeTimeoutMs }) {
  const redis = new Redis(redisUrl)
  const keyPrefix = 'burst-' + randomBytes(6).toString('hex')
  // Why any decision failed, from the limiter's own error log: a failed run says what to look at.
  const causes = new Map()
  const stream = {
    write (line) {
      const err = JSON.parse(line).err
      const cause = err === undefined ? 'other' : `${err.type}: ${err.message}`
      causes.set(cause, (causes.get(cause) ?? 0) + 1)
    }
  }
  const app = Fastify({ logger: { level: 'error', stream } })
  await app.register(rateLimiting, {
    redis,
    keyPrefix,
    metrics: false,
    storeTimeoutMs,
    tiers: { burst: limits },
    tenantExtractor: () => ({ tenantId: 'acme', tier: 'burst' })
  })
  let running = 0
  let mostRunning = 0
  app.get('/', async () => {
    running++
    mostRunning = Math.max(mostRunning, running)
    spin(cpuMs)
    if (holdMs > 0) await new Promise(resolve => setTimeout(resolve, holdMs))
    running--
    return 'ok'
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address()
  // The event loop's longest stall during the burst: the deadline must be shorter for the burst
  // to show that only Redis's own time counts against it.
  const loopDelay = monitorEventLoopDelay({ resolution: 5 })
  try {
    loopDelay.enable()
    const answers = await sendAll(port, requests)
    loopDelay.disable()
    return {
      admitted: answers.filter(a => a.status === 200).length,
      refused: answers.filter(a => a.status === 429).length,
      other: answers.filter(a => a.status !== 200 && a.status !== 429).length,
      degraded: answers.filter(a => a.degraded).length,
      causes: [...causes].map(([cause, count]) => `${count}× ${cause}`).join('; '),
      mostRunning,
      longestStallMs: Math.round(loopDelay.max / 1e6)
    }
  } finally {
    await app.close()
    const keys = await redis.keys(keyPrefix + ':*')
    if (keys.length > 0) await redis.del(...keys)
    redis.disconnect()
  }
}

// The clients run on a thread of their own, so the burst reaches the service all at once, as it
// would from other machines, and the service's event loop is busy with the service alone.
const CLIENTS = `
const http = require('node:http')
const { parentPort, workerData } = require('node:worker_threads')
const get = () => new Promise(resolve => {
  const req = http.get({ host: '127.0.0.1', port: workerData.port, path: '/', agent: false }, res => {
    res.resume()
    res.on('end', () => resolve({ status: res.statusCode, degraded: res.headers['x-ratelimit-status'] === 'degraded' }))
  })
  req.on('error', () => resolve({ status: 0, degraded: false }))
})
Promise.all(Array.from({ length: workerData.requests }, get)).then(answers => parentPort.postMessage(answers))
`

async function sendAll (port, requests) {
  const worker = new Worker(CLIENTS, { eval: true, workerData: { port, requests } })
  try {
    return await new Promise((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
  } finally {
    await worker.terminate()
  }
}

/** The two bursts of the issue that found the defect: a window, then concurrency. */
export async function windowBurst (settings) {
  return await burst({
    ...settings,
    limits: { requestsPerMinute: WINDOW_LIMIT, requestsPerHour: UNLIMITED, concurrentRequests: UNLIMITED, monthlyQuota: UNLIMITED }
  })
}

export async function concurrencyBurst (settings) {
  return await burst({
    ...settings,
    holdMs: 5,
    limits: { requestsPerMinute: UNLIMITED, requestsPerHour: UNLIMITED, concurrentRequests: CONCURRENCY_LIMIT, monthlyQuota: UNLIMITED }
  })
}

export const LIMITS = { window: WINDOW_LIMIT, concurrency: CONCURRENCY_LIMIT }

async function main () {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '20' },
      requests: { type: 'string', default: '500' },
      'cpu-ms': { type: 'string', default: '1' },
      'timeout-ms': { type: 'string', default: '100' }
    }
  })
  const settings = {
    redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379',
    requests: Number(values.requests),
    cpuMs: Number(values['cpu-ms']),
    storeTimeoutMs: Number(values['timeout-ms'])
  }
  const runs = Number(values.runs)
  let broken = 0
  const admitted = []
  const most = []
  for (let run = 1; run <= runs; run++) {
    const w = await windowBurst(settings)
    const c = await concurrencyBurst(settings)
    admitted.push(w.admitted)
    most.push(c.mostRunning)
    const bad = w.admitted > WINDOW_LIMIT || w.degraded > 0 || w.other > 0 || c.mostRunning > CONCURRENCY_LIMIT || c.degraded > 0 || c.other > 0
    if (bad) broken++
    console.log(`run ${run}: window ${w.admitted}/${settings.requests} admitted (limit ${WINDOW_LIMIT}), ${w.degraded} degraded${w.causes && ` (${w.causes})`}, ${w.other} other, event loop stalled up to ${w.longestStallMs} ms; ` +
      `concurrency ${c.mostRunning} handlers at once (limit ${CONCURRENCY_LIMIT}), ${c.admitted}/${settings.requests} admitted, ${c.degraded} degraded${c.causes && ` (${c.causes})`}${bad ? '  BROKEN' : ''}`)
  }
  console.log(`\n${runs} runs: admitted out of ${settings.requests} min ${Math.min(...admitted)}, max ${Math.max(...admitted)}; ` +
    `most handlers at once max ${Math.max(...most)}; runs that broke a limit: ${broken}`)
  process.exitCode = broken > 0 ? 1 : 0
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) await main()
