#!/usr/bin/env node
// A local Redis Cluster for developers and tests: three masters on loopback ports.
//   node scripts/redis-cluster.mjs start [firstPort]   (default 7100: ports 7100-7102)
//   node scripts/redis-cluster.mjs stop
// Node data and pids live in .redis-data/cluster/ (git-ignored).
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('../.redis-data/cluster/', import.meta.url))
const pidFile = dir + 'pids.json'

/** Starts three cluster-enabled masters, joins them, and waits for cluster_state:ok. */
export async function startCluster (firstPort, dataDir = dir) {
  rmSync(dataDir, { recursive: true, force: true })
  mkdirSync(dataDir, { recursive: true })
  // Each node also listens on its port + 10000 (the cluster bus).
  const ports = [firstPort, firstPort + 1, firstPort + 2]
  const pids = []
  for (const port of ports) {
    const child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes',
      '--cluster-config-file', `${dataDir}nodes-${port}.conf`, '--cluster-node-timeout', '2000',
      '--save', '', '--appendonly', 'no', '--dir', dataDir, '--daemonize', 'no'
    ], { stdio: 'ignore', detached: true })
    child.unref()
    pids.push(child.pid)
  }
  for (const port of ports) await waitFor(() => cli(port, 'ping') === 'PONG', `node ${port}`)
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' })
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stdout}${created.stderr}`)
  for (const port of ports) await waitFor(() => cli(port, 'cluster', 'info').includes('cluster_state:ok'), `cluster state on ${port}`)
  return { ports, pids }
}

export function stopCluster (pids) {
  for (const pid of pids) {
    try { process.kill(pid, 'SIGKILL') } catch {}
  }
}

function cli (port, ...args) {
  return spawnSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).stdout.trim()
}

async function waitFor (check, what) {
  for (let i = 0; i < 200; i++) {
    if (check()) return
    await sleep(50)
  }
  throw new Error(`timed out waiting for ${what}`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [command, port] = process.argv.slice(2)
  if (command === 'start') {
    if (existsSync(pidFile)) stopCluster(JSON.parse(readFileSync(pidFile, 'utf8')))
    const { ports, pids } = await startCluster(Number(port ?? 7100))
    writeFileSync(pidFile, JSON.stringify(pids))
    console.log(`Redis Cluster up on 127.0.0.1:${ports.join(', ')}; connect with new Cluster([{ host: '127.0.0.1', port: ${ports[0]} }])`)
  } else if (command === 'stop') {
    if (existsSync(pidFile)) {
      stopCluster(JSON.parse(readFileSync(pidFile, 'utf8')))
      rmSync(dir, { recursive: true, force: true })
      console.log('Redis Cluster stopped')
    } else {
      console.log('no cluster started by this script')
    }
  } else {
    console.error('usage: node scripts/redis-cluster.mjs start [firstPort] | stop')
    process.exit(2)
  }
}
