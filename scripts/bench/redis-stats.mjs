// What the limiters cost Redis: commands per request (INFO commandstats) and memory per tenant.
import { spawn } from 'node:child_process'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import { DEFAULT_TIERS, RedisStore } from '../../dist/index.js'
import { storeKeys } from '../../dist/keys.js'
import { freePort, waitForRedis } from '../loopback-redis.mjs'

// ---------------------------------------------------------------------------------------------
// Commands per request

/** Commands this benchmark itself sends while counting; left out of the counts. */
const OWN_COMMANDS = new Set(['info', 'config|resetstat'])
const SCRIPT_COMMANDS = new Set(['evalsha', 'eval', 'evalsha_ro', 'eval_ro', 'fcall', 'fcall_ro'])

/**
 * Calls and microseconds per command since the last CONFIG RESETSTAT:
 * `{ calls: { evalsha: 1000, … }, usec: { evalsha: 4200, … } }`.
 */
export async function commandStats (redis) {
  const calls = {}
  const usec = {}
  for (const line of (await redis.info('commandstats')).split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim())
    if (match === null || OWN_COMMANDS.has(match[1])) continue
    calls[match[1]] = Number(match[2])
    usec[match[1]] = Number(match[3])
  }
  return { calls, usec }
}

/**
 * A redis-server of the benchmark's own on a free loopback port, so that no other client's commands
 * end up in the counts; undefined when no redis-server binary can be started.
 */
export async function startPrivateRedis () {
  const port = await freePort()
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const failed = new Promise((resolve) => {
    proc.once('error', () => resolve(true))
    proc.once('exit', () => resolve(true))
  })
  const url = `redis://127.0.0.1:${port}`
  const ready = await Promise.race([failed.then(() => false), waitForRedis(port, proc).then(() => true, () => false)])
  if (ready) {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
    client.on('error', () => {})
    try {
      await client.connect()
      const version = /redis_version:(\S+)/.exec(await client.info('server'))?.[1] ?? 'unknown'
      return {
        url,
        client,
        version,
        async stop () {
          client.disconnect()
          if (proc.exitCode === null && proc.signalCode === null) {
            const exited = new Promise((resolve) => proc.once('exit', resolve))
            proc.kill('SIGTERM')
            await exited
          }
        }
      }
    } catch {
      client.disconnect()
    }
  }
  proc.kill('SIGKILL')
  return undefined
}

/** Clients connected to Redis other than the given connection count (ours). */
export async function otherClients (redis, ours) {
  const connected = Number(/connected_clients:(\d+)/.exec(await redis.info('clients'))?.[1] ?? NaN)
  return connected - ours
}

/**
 * Runs `drive` (a fixed number of requests) between CONFIG RESETSTAT and INFO commandstats and
 * returns per request: all commands (also those run inside scripts), script calls alone, and the
 * time Redis spent running scripts (Redis's own measure, the commands inside included).
 */
export async function countCommands (redis, drive) {
  await redis.config('RESETSTAT')
  const served = await drive()
  // Releases go out after the response: let the last ones land before reading.
  await sleep(300)
  const { calls, usec } = await commandStats(redis)
  const sum = (table, only) => Object.entries(table).filter(([name]) => only === undefined || only.has(name)).reduce((a, [, n]) => a + n, 0)
  return {
    served,
    calls,
    perRequest: sum(calls) / served,
    scriptsPerRequest: sum(calls, SCRIPT_COMMANDS) / served,
    scriptUsecPerRequest: sum(usec, SCRIPT_COMMANDS) / served
  }
}

// ---------------------------------------------------------------------------------------------
// Memory per active tenant

export const MEMORY_TIERS = Object.freeze(['anonymous', 'starter', 'professional', 'enterprise'])
const HOUR = 3_600_000
const MINUTE = 60_000

/**
 * For each default tier: a tenant that used its whole hour, replayed on the store's clock over the
 * last 60 simulated minutes, then every key of that tenant measured with MEMORY USAGE.
 *
 * Schedule: the hour limit less one minute's worth is spread evenly over minutes 0–57 (one request
 * at least every few seconds for the busy tiers, every hour bucket touched), then the last minute
 * gets one request per minute bucket (as many as the minute limit allows, up to the bucket count),
 * so every hour bucket and as many minute buckets as the tier can fill are present at the end, with
 * the month's counter. Each request's lease is released except the last one, which stays held.
 */
export async function memoryPerTenant (redis, keyPrefix) {
  const bucketsPerWindow = 20
  const end = Date.now()
  const start = end - HOUR
  let now = start
  const store = new RedisStore({ client: redis, clock: () => now, bucketsPerWindow })
  const rows = []
  try {
    for (const tier of MEMORY_TIERS) {
      const limits = DEFAULT_TIERS[tier]
      const id = `mem-${tier}`
      const keys = storeKeys(keyPrefix, 'tenant', id, undefined)
      const lastMinute = Math.min(limits.requestsPerMinute, bucketsPerWindow)
      const spread = limits.requestsPerHour - lastMinute
      const times = []
      for (let i = 0; i < spread; i++) times.push(start + Math.floor(i * 57 * MINUTE / spread))
      for (let i = 0; i < lastMinute; i++) times.push(end - MINUTE + Math.floor(i * MINUTE / lastMinute) + 1)

      let admitted = 0
      let rejected = 0
      let seq = 0
      let held
      for (const t of times) {
        now = t
        const leaseId = `bench-lease-${++seq}`
        const decision = await store.admit({ keys, cost: 1, limits, leaseId })
        if (!decision.allowed) {
          rejected++
          continue
        }
        admitted++
        if (held !== undefined) store.release(keys, held)
        held = leaseId
      }
      await sleep(50) // the last release is fire-and-forget

      // Every key of this tenant, whatever the bucket: the subject's hash-tagged base.
      const base = keys.counters.slice(0, keys.counters.lastIndexOf('}:') + 2)
      const found = await scanKeys(redis, base.replace(/[*?[\]\\]/g, '\\$&') + '*')
      let bytes = 0
      for (const key of found) bytes += Number(await redis.memory('USAGE', key, 'SAMPLES', '0'))
      rows.push({
        tier,
        limits,
        admitted,
        rejected,
        keys: found.length,
        fields: await redis.hlen(keys.counters),
        leases: await redis.hlen(keys.leases),
        bytes
      })
    }
  } finally {
    await store.close()
  }
  return rows
}

async function scanKeys (redis, pattern) {
  const keys = []
  let cursor = '0'
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    keys.push(...batch)
  } while (cursor !== '0')
  return keys
}

/** Keys matching a pattern, counted (stops at `atLeast` when given). */
export async function countKeys (redis, pattern, atLeast = Infinity) {
  let cursor = '0'
  let count = 0
  do {
    const [next, batch] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    count += batch.length
  } while (cursor !== '0' && count < atLeast)
  return count
}

/** Keys matching a pattern on each master of a Cluster client, in the order of `nodes('master')`. */
export async function keysPerMaster (cluster, pattern) {
  return await Promise.all(cluster.nodes('master').map((node) => countKeys(node, pattern)))
}

export async function deleteKeys (redis, pattern) {
  let cursor = '0'
  let deleted = 0
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = next
    if (keys.length === 0) continue
    // One DEL per key (keys of one batch may hash to different slots), sent as one pipeline.
    const pipeline = redis.pipeline()
    for (const key of keys) pipeline.del(key)
    for (const [err, n] of await pipeline.exec()) {
      if (err !== null) throw err
      deleted += n
    }
  } while (cursor !== '0')
  return deleted
}
