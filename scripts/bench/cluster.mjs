// The Redis Cluster of the cluster scenarios: three masters of the bench's own on free loopback
// ports (scripts/redis-cluster.mjs), with their data in a temporary folder, stopped by their pids.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from 'ioredis'
import { startCluster, stopCluster } from '../redis-cluster.mjs'

/**
 * A Cluster client of the masters on these loopback ports; `redisOptions` apply to each node's
 * connection, `enableAutoPipelining` to the client (one write per node and event-loop turn).
 */
export function clusterClient (ports, redisOptions, enableAutoPipelining = false) {
  return new Cluster(ports.map((port) => ({ host: '127.0.0.1', port })), { lazyConnect: true, redisOptions, enableAutoPipelining })
}

/**
 * Starts the three masters and connects a client to them. Returns { ports, pids, client, version,
 * stop }; stop() is synchronous (it kills the pids), so a signal handler can call it too.
 */
export async function startPrivateCluster () {
  const dir = mkdtempSync(join(tmpdir(), 'maestro-bench-cluster-')) + '/'
  let pids = []
  let client
  const stop = () => {
    client?.disconnect()
    stopCluster(pids)
    rmSync(dir, { recursive: true, force: true })
  }
  try {
    const started = await startCluster(await freeFirstPort(), dir)
    pids = started.pids
    client = clusterClient(started.ports, { maxRetriesPerRequest: 1, connectTimeout: 3000 })
    client.on('error', () => {}) // a failed connect rejects below
    await client.connect()
    const version = /redis_version:(\S+)/.exec(await client.nodes('master')[0].info('server'))?.[1] ?? 'unknown'
    return { ports: started.ports, pids, client, version, stop }
  } catch (err) {
    stop()
    throw new Error(`could not start a Redis Cluster (${err.message}); leave the cluster scenarios out of BENCH_ONLY to run without one`)
  }
}

/** A first port p such that p, p + 1, p + 2 and their cluster-bus ports (+ 10000) are free on loopback. */
async function freeFirstPort () {
  for (let attempt = 0; attempt < 50; attempt++) {
    const first = 20_000 + Math.floor(Math.random() * 9_000)
    const ports = [0, 1, 2].flatMap((i) => [first + i, first + i + 10_000])
    if ((await Promise.all(ports.map(isFree))).every(Boolean)) return first
  }
  throw new Error('no free loopback ports for three masters')
}

function isFree (port) {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}
