// Load generation with autocannon (in the parent process) and latency with microsecond resolution.
import { createHistogram } from 'node:perf_hooks'
import autocannon from 'autocannon'
import { ROUTE, TENANT_HEADER } from './scenarios.mjs'

/**
 * One autocannon run against a server child. Either `duration` (seconds) or `amount` (requests;
 * every request sent is answered before the run ends). `tenants`: spread the requests over that
 * many tenant ids in TENANT_HEADER.
 */
export async function load (child, { duration, amount, connections, tenants }) {
  const options = {
    url: `http://127.0.0.1:${child.port}${ROUTE}`,
    connections,
    timeout: 10,
    ...(amount === undefined ? { duration } : { amount })
  }
  if (tenants !== undefined) options.setupClient = tenantRotation(tenants, connections)
  const run = autocannon(options)
  // autocannon's own latency histogram has whole-millisecond resolution; this one keeps microseconds.
  const latency = createHistogram()
  run.on('response', (_client, _status, _bytes, ms) => latency.record(Math.max(1, Math.round(ms * 1000))))
  const result = await run
  const statusCodes = Object.fromEntries(Object.entries(result.statusCodeStats ?? {}).map(([code, { count }]) => [code, Number(count)]))
  return {
    rps: result.requests.average,
    requests: result.requests.total,
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
 * Connection c cycles through tenants c, c + connections, c + 2·connections…: every tenant is used,
 * no two connections ever share one, and each request is built once, before the run (a per-request
 * `setupRequest` would rebuild every request in the load generator).
 */
function tenantRotation (tenants, connections) {
  let next = 0
  return (client) => {
    const first = next++ % connections
    const requests = []
    for (let i = first; i < tenants; i += connections) requests.push({ headers: { [TENANT_HEADER]: tenantId(i) } })
    client.setRequests(requests)
  }
}
