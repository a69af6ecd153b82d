// Load generation with autocannon (in the parent process) and latency with microsecond resolution.
import { randomInt } from 'node:crypto'
import { createHistogram } from 'node:perf_hooks'
import autocannon from 'autocannon'
import { ROUTE, TENANT_HEADER } from './scenarios.mjs'

/**
 * One autocannon run against a server child. Either `duration` (seconds) or `amount` (requests;
 * every request sent is answered before the run ends). `tenants`: a tenant id in TENANT_HEADER
 * drawn at random from that many for every request. `onStart`: called once the requests are built,
 * as the run starts (autocannon's 'start'). Latencies in ms.
 */
export async function load (child, { duration, amount, connections, tenants, onStart }) {
  const options = {
    url: `http://127.0.0.1:${child.port}${ROUTE}`,
    connections,
    timeout: 10,
    ...(amount === undefined ? { duration } : { amount })
  }
  if (tenants !== undefined) options.setupClient = randomTenants(tenants)
  const run = autocannon(options)
  if (onStart !== undefined) run.once('start', onStart)
  // autocannon's own latency histogram has whole-millisecond resolution; this one keeps microseconds.
  const latency = createHistogram()
  run.on('response', (_client, _status, _bytes, ms) => latency.record(Math.max(1, Math.round(ms * 1000))))
  const result = await run
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => [code, Number(count)]))
  return {
    rps: result.requests.average,
    requests: result.requests.total,
    mean: latency.count === 0 ? NaN : latency.mean / 1000,
    p50: latency.count === 0 ? NaN : latency.percentile(50) / 1000,
    p99: latency.count === 0 ? NaN : latency.percentile(99) / 1000,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes
  }
}

export function tenantId (i) {
  return 'tenant-' + String(i).padStart(5, '0')
}

/**
 * Requests per connection before its sequence of tenants repeats: more than one connection sends in
 * a 5-second run at 50 connections on the machine of docs/benchmarks.md, so within such a run every
 * request's tenant is a draw of its own.
 */
const SEQUENCE_LENGTH = 2_000

/** Per connection index, its sequence of tenant indices: drawn once, so every scenario and round sends the same. */
const sequences = new Map()

function tenantSequence (tenants, connection) {
  const key = `${tenants}/${connection}`
  if (!sequences.has(key)) sequences.set(key, Array.from({ length: SEQUENCE_LENGTH }, () => randomInt(tenants)))
  return sequences.get(key)
}

/**
 * Connection c sends the tenants of its own random sequence (uniform over `tenants`, independent
 * draws, the same for every scenario). Each request is built once, before the run (a per-request
 * `setupRequest` would rebuild every request in the load generator).
 */
function randomTenants (tenants) {
  let next = 0
  return (client) => {
    const sequence = tenantSequence(tenants, next++)
    client.setRequests(sequence.map((i) => ({ headers: { [TENANT_HEADER]: tenantId(i) } })))
  }
}
