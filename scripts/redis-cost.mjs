// Redis time per admission: what the store's commands cost Redis itself, read from INFO commandstats
// of a private redis-server and of a private three-master Cluster, with no HTTP in the way. Three
// traffic shapes: one busy tenant (batches share a hash), 10,000 tenants on one Redis, and 10,000
// tenants on the Cluster (a call per admission). Every admission takes a lease and gives it back.
//
//   npm run build && node scripts/redis-cost.mjs [--turns N] [--against DIR] [--rounds N] [--only SHAPE]
//     [--usage] [--thresholds 0.8,0.9,1]   (usage records kept; quota alerts watched)
//
// Prints, per shape, the µs of Redis time per admission by command (a script's commands are counted
// inside EVALSHA too, and listed on their own lines), then what one call costs before its first
// item (the admit script with no item, against `return 1`). With --against, DIR is another checkout of this
// package, built: each shape runs this build and that one alternately (--rounds times each, default
// 3), and the report ends with both totals per shape: an ablation of whatever differs between them.
import { spawn } from 'node:child_process'
import { parseArgs } from 'node:util'
import { Redis } from 'ioredis'
import { pathToFileURL } from 'node:url'
import { startPrivateCluster } from './bench/cluster.mjs'
import { freePort, waitForRedis } from './loopback-redis.mjs'

const { values } = parseArgs({
  options: {
    turns: { type: 'string', default: '2000' },
    against: { type: 'string' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
    usage: { type: 'boolean', default: false },
    thresholds: { type: 'string' }
  }
})
const TURNS = Number(values.turns)
/** What the cost probes use of a build: the store, its key builder and its admit script. */
async function loadBuild (root) {
  const at = (file) => import(pathToFileURL(`${root}/dist/${file}`).href)
  const [{ RedisStore, ADMIT_SCRIPT }, { storeKeys }] = await Promise.all([at('store/redis-store.js'), at('keys.js')])
  return { RedisStore, ADMIT_SCRIPT, storeKeys }
}

const builds = [{ name: 'this build', lib: await loadBuild(new URL('..', import.meta.url).pathname) }]
if (values.against !== undefined) {
  builds.push({ name: values.against, lib: await loadBuild(values.against) })
}
const ROUNDS = values.against === undefined ? 1 : Number(values.rounds)
const PER_TURN = 16
const LIMITS = { requestsPerMinute: 1e9, requestsPerHour: 1e9, concurrentRequests: 10_000, monthlyQuota: 1e12 }

/** `turns` event-loop turns of PER_TURN admissions each, every lease given back after its answer. */
async function traffic (lib, store, tenantOf, turns, withLevels) {
  let id = 0
  // The levels shape: the tenant's organization and a shared route budget, with the tenant's limits.
  const org = withLevels ? lib.storeKeys('cost', 'organization', 'org', undefined) : undefined
  const route = withLevels ? lib.storeKeys('cost', 'route', 'budget', undefined) : undefined
  const levels = withLevels ? [{ scope: 'organization', keys: org, limits: LIMITS }, { scope: 'route', keys: route, limits: LIMITS }] : undefined
  for (let turn = 0; turn < turns; turn++) {
    await Promise.all(Array.from({ length: PER_TURN }, async () => {
      const keys = lib.storeKeys('cost', 'tenant', tenantOf(), undefined, withLevels ? 'org' : undefined)
      const leaseId = 'l' + (++id)
      await store.admit({ keys, cost: 1, limits: LIMITS, leaseId, levels, keepUsage: values.usage })
      store.release(keys, leaseId)
      if (withLevels) {
        store.release(org, leaseId)
        store.release(route, leaseId)
      }
    }))
  }
  await new Promise(resolve => setTimeout(resolve, 50)) // the last releases go out
}

/** Warms up (every tenant touched, scripts loaded), then measures `TURNS` turns; returns µs per admission. */
async function measure (label, client, nodes, tenantOf, { name, lib }, withLevels) {
  for (const node of nodes) await node.flushall()
  // --thresholds 0.8,0.9,1: quota alerts watched (a build without them ignores the option).
  const alertThresholds = values.thresholds === undefined ? [] : values.thresholds.split(',').map(Number)
  const store = new lib.RedisStore({ client, alertThresholds })
  await traffic(lib, store, tenantOf, 2500, withLevels)
  for (const node of nodes) await node.config('RESETSTAT')
  await traffic(lib, store, tenantOf, TURNS, withLevels)
  const totals = new Map()
  for (const node of nodes) {
    for (const [, command, calls, usec] of (await node.info('commandstats')).matchAll(/cmdstat_(\w+):calls=(\d+),usec=(\d+)/g)) {
      const [c, u] = totals.get(command) ?? [0, 0]
      totals.set(command, [c + Number(calls), u + Number(usec)])
    }
  }
  await store.close()
  const admissions = TURNS * PER_TURN
  console.log(`\n${label}, ${name}: ${admissions} admissions`)
  let total = 0
  for (const [command, [calls, usec]] of [...totals].sort((a, b) => b[1][1] - a[1][1])) {
    console.log(`  ${command.padEnd(10)} ${(calls / admissions).toFixed(3).padStart(7)} calls  ${(usec / admissions).toFixed(2).padStart(7)} µs per admission`)
    // Commands a script runs are counted inside its EVALSHA too; on a Cluster a release is a plain HDEL.
    if (command === 'evalsha' || command === 'eval' || (command === 'hdel' && nodes.length > 1)) total += usec
  }
  return total / admissions
}

/** What a script call costs Redis before its first item: the admit script with none, against `return 1`. */
async function fixedCost (redis) {
  console.log('\nRedis µs per call with no item (the fixed cost of a call):')
  const calls = 20_000
  const probe = async (label, source, args) => {
    const sha = await redis.script('LOAD', source)
    await redis.config('RESETSTAT')
    for (let sent = 0; sent < calls; sent += 500) {
      const pipeline = redis.pipeline()
      for (let i = 0; i < 500; i++) pipeline.evalsha(sha, 0, ...args)
      await pipeline.exec()
    }
    const [, count, usec] = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(await redis.info('commandstats'))
    console.log(`  ${label}: ${(Number(usec) / Number(count)).toFixed(2)}`)
  }
  await probe('return 1', 'return 1', [])
  for (const { name, lib } of builds) await probe(`admit script, ${name}`, lib.ADMIT_SCRIPT.source, [JSON.stringify([20, 60_000, -1])])
}

const results = new Map()
/** Every build measured on one shape, alternately, ROUNDS times. */
async function compare (label, client, nodes, tenantOf, withLevels = false) {
  if (values.only !== undefined && !label.includes(values.only)) return
  for (let round = 0; round < ROUNDS; round++) {
    for (const build of round % 2 === 0 ? builds : [...builds].reverse()) {
      const us = await measure(label, client, nodes, tenantOf, build, withLevels)
      const key = `${label} | ${build.name}`
      results.set(key, [...(results.get(key) ?? []), us])
    }
  }
}

const random10k = () => 't' + Math.floor(Math.random() * 10_000)

const port = await freePort()
const server = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
let cluster
try {
  await waitForRedis(port, server)
  const redis = new Redis({ port })
  await compare('one busy tenant, one Redis', redis, [redis], () => 'hot')
  await compare('10,000 tenants, one Redis', redis, [redis], random10k)
  await compare('one busy tenant with its organization and a shared route budget, one Redis', redis, [redis], () => 'hot', true)
  if (values.only === undefined) await fixedCost(redis)
  redis.disconnect()

  if (values.only === undefined || 'three-master Cluster'.includes(values.only)) cluster = await startPrivateCluster()
  if (cluster !== undefined) await compare('10,000 tenants, three-master Cluster', cluster.client, cluster.client.nodes('master'), random10k)
  console.log('\nRedis µs per admission (commands outside scripts, plus scripts with what they run), per round:')
  for (const [key, rounds] of results) console.log(`  ${key}: ${rounds.map(us => us.toFixed(1)).join(', ')}`)
} finally {
  server.kill('SIGKILL')
  cluster?.stop()
}
