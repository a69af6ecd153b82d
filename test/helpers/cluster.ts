// A private three-master Redis Cluster for one test file, stopped when it ends.
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Cluster } from 'ioredis'
import { startCluster, stopCluster } from '../../scripts/redis-cluster.mjs'

interface Teardown { teardown (fn: () => unknown): void }

async function isFree (port: number): Promise<boolean> {
  return await new Promise(resolve => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** Three free ports in a row whose cluster-bus ports (+10000) are free too. */
async function freeRun (): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 9_000)
    const ports = [base, base + 1, base + 2]
    const all = await Promise.all([...ports, ...ports.map(p => p + 10_000)].map(isFree))
    if (all.every(Boolean)) return base
  }
  throw new Error('no free ports for a local Redis Cluster')
}

export async function privateCluster (t: Teardown): Promise<{ ports: number[], pids: number[], client: () => Cluster }> {
  const dir = mkdtempSync(join(tmpdir(), 'maestro-rl-cluster-')) + '/'
  const { ports, pids } = await startCluster(await freeRun(), dir)
  t.teardown(() => { stopCluster(pids); rmSync(dir, { recursive: true, force: true }) })
  const client = (): Cluster => {
    const cluster = new Cluster(ports.map(port => ({ host: '127.0.0.1', port })))
    t.teardown(() => cluster.disconnect())
    return cluster
  }
  return { ports, pids, client }
}
