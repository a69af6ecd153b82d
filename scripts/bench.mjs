// Benchmark: what @maestro/rate-limiting costs per request, against bare Fastify and its peers
// (@fastify/rate-limit, rate-limiter-flexible, a bare EVALSHA probe), all measured in the same run.
// Every server runs in a child process of its own (scripts/bench/server.mjs), so the load generator
// (autocannon, in this process) and the server under test never share an event loop. Scenarios are
// interleaved in rounds (in a rotating order) and each ratio compares a scenario with its reference
// of the same round, so drift of the machine during the run cancels out. The cluster scenarios run on
// a three-master Redis Cluster the bench starts for them (only when one is selected) and stops at the
// end. After the rounds: Redis commands per request (INFO commandstats around a dedicated run) and
// Redis memory per active tenant of each default tier (replayed on the store's clock). Prints a
// markdown report.
//
//   npm run bench      (builds, then runs this)
//
//   BENCH_ONLY          comma-separated scenario names (default: all; see scripts/bench/scenarios.mjs)
//   BENCH_DURATION      seconds per scenario and round (default 5)
//   BENCH_ROUNDS        rounds (default 5)
//   BENCH_CONNECTIONS   concurrent connections (default 50; the one-connection scenarios keep one)
//   BENCH_WARMUP        seconds of warm-up per scenario before the first round (default 2)
//   BENCH_CMD_REQUESTS  requests of each run that counts Redis commands (default 20000)
//   REDIS_URL           Redis of the redis scenarios (default redis://127.0.0.1:6379)
//   BENCH_PROFILE       a folder: every server writes a CPU profile there (<scenario>.cpuprofile)
//   BENCH_BASELINE      another checkout of this package, built: adds the baseline-* scenarios, which
//                       run its plugin in the same rounds (an ablation of whatever differs)
//
// Exit status 1 when a server fails, a request errors, a scenario that must never be limited answers
// anything but 2xx, or the over-limit scenario answers anything but 200 and 429 (or never 429).
import { fork } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { startPrivateCluster } from './bench/cluster.mjs'
import { load } from './bench/load.mjs'
import { cpuPerRequest, processCpuMicros, sampleCpu } from './bench/cpu.mjs'
import { countCommands, countKeys, deleteKeys, keysPerMaster, memoryPerTenant, otherClients, startPrivateRedis } from './bench/redis-stats.mjs'
import { buildReport } from './bench/report.mjs'
import { COMMAND_COUNT_SCENARIOS, OPEN_TIER, PEER_MAX, ROUTE, SCENARIOS, TENANT_HEADER, scenarioPrefix } from './bench/scenarios.mjs'

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const SERVER = fileURLToPath(new URL('./bench/server.mjs', import.meta.url))

process.exitCode = await main()

async function main () {
  const settings = {
    duration: envInteger('BENCH_DURATION', 5, 1, 600),
    rounds: envInteger('BENCH_ROUNDS', 5, 1, 50),
    connections: envInteger('BENCH_CONNECTIONS', 50, 1, 10_000),
    warmup: envInteger('BENCH_WARMUP', 2, 0, 600),
    cmdRequests: envInteger('BENCH_CMD_REQUESTS', 20_000, 1, 10_000_000)
  }
  if (Object.values(settings).includes(null)) return 2
  const scenarios = selectScenarios(process.env.BENCH_ONLY)
  if (scenarios === null) return 2
  if (settings.cmdRequests < settings.connections) {
    console.error('bench: BENCH_CMD_REQUESTS must be at least BENCH_CONNECTIONS')
    return 2
  }

  const loadBefore = os.loadavg()[0]
  const keyPrefix = `maestro-bench-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`
  const children = []
  const problems = []
  let redis
  let cluster

  // Bounded: everything must be over well within this budget, or the run fails.
  const perMeasure = settings.duration + 10
  const budgetMs = 1000 * (300 + COMMAND_COUNT_SCENARIOS.length * 120 +
    scenarios.length * (settings.warmup + 15 + settings.rounds * perMeasure))
  const watchdog = setTimeout(() => {
    console.error(`bench: did not finish within ${Math.round(budgetMs / 1000)} s, giving up`)
    for (const child of children) child.process.kill('SIGKILL')
    cluster?.stop()
    process.exit(1)
  }, budgetMs)
  const onSignal = (signal) => {
    console.error(`bench: ${signal}, stopping`)
    for (const child of children) child.process.kill('SIGKILL')
    cluster?.stop() // its masters run in process groups of their own: no signal reaches them
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
    const serverInfo = await redis.info('server')
    const redisVersion = /redis_version:(\S+)/.exec(serverInfo)?.[1] ?? 'unknown'
    const redisPid = localRedisPid(serverInfo)
    const othersBefore = await otherClients(redis, 1)
    if (scenarios.some((s) => s.cluster)) {
      cluster = await startPrivateCluster()
      log(`Redis Cluster: masters on 127.0.0.1:${cluster.ports.join(', ')} (pids ${cluster.pids.join(', ')})`)
    }
    const serverEnv = { REDIS_URL, BENCH_KEY_PREFIX: keyPrefix, BENCH_CLUSTER: cluster?.ports.join(',') ?? '' }
    // Where a scenario's Redis CPU time is read: the Cluster's masters, or the one local Redis.
    const redisPids = (scenario) => scenario.cluster ? cluster.pids : redisPid === null ? [] : [redisPid]
    // Every run of a scenario has its own number of connections, its tenants and its CPU readings.
    const loadOf = async (child, runOptions) => {
      const { scenario } = child
      let before
      const m = await load(child, {
        connections: scenario.connections ?? settings.connections,
        tenants: scenario.tenants,
        // Read once autocannon has built the requests: building them is no request's cost.
        onStart: () => { before = sampleCpu(child.process.pid, redisPids(scenario)) },
        ...runOptions
      })
      m.cpu = cpuPerRequest(before, sampleCpu(child.process.pid, redisPids(scenario)), m.requests)
      return m
    }

    // Every Redis scenario but the probe (which only reads) must have written under its prefix; on
    // the Cluster, on every master.
    const checkKeys = async (scenario) => {
      if (scenario.store !== 'redis' || scenario.kind === 'probe') return
      const pattern = scenarioPrefix(keyPrefix, scenario.name) + ':*'
      const counts = scenario.cluster ? await keysPerMaster(cluster.client, pattern) : [await countKeys(redis, pattern)]
      log(`${scenario.name}: ${counts.join(' + ')} Redis keys under its prefix`)
      if (counts.includes(0)) problems.push(`${scenario.name}: no Redis keys under its prefix${scenario.cluster ? ' on some master' : ''}; the scenario did not use Redis as it should`)
    }

    for (const scenario of scenarios) {
      const child = await startServer(scenario, serverEnv)
      children.push(child)
      await checkServer(child)
      log(`${scenario.name}: listening on 127.0.0.1:${child.port} (pid ${child.process.pid})`)
    }
    // Connections of our children: the rest are someone else's.
    const childConnections = await otherClients(redis, 1) - othersBefore

    if (settings.warmup > 0) {
      for (const child of children) {
        log(`warm-up ${child.scenario.name} (${settings.warmup} s)`)
        await loadOf(child, { duration: settings.warmup })
      }
    }

    // results[scenario name] = one measurement per round
    const results = Object.fromEntries(scenarios.map((s) => [s.name, []]))
    for (let round = 0; round < settings.rounds; round++) {
      // Rotate the order so that no scenario always runs first or last in a round.
      const order = children.map((_, i) => children[(i + round) % children.length])
      for (const child of order) {
        const m = await loadOf(child, { duration: settings.duration })
        results[child.scenario.name].push(m)
        log(`round ${round + 1}/${settings.rounds} ${child.scenario.name}: ${Math.round(m.rps)} req/s, ` +
          `p50 ${m.p50.toFixed(2)} ms, p99 ${m.p99.toFixed(2)} ms, statuses ${JSON.stringify(m.statusCodes)}, errors ${m.errors}`)
        problems.push(...checkRun(child, m, `round ${round + 1}`))
        // Checked right after the scenario's first run, before the keys of a short window expire.
        if (round === 0) await checkKeys(child.scenario)
      }
    }

    // Redis commands per request: a dedicated run of a fixed number of requests per scenario.
    const counted = await measureCommands({ scenarios, settings, serverEnv, children, problems, redis, childConnections })

    log('Redis memory per active tenant (replayed hour per default tier)')
    const memory = await memoryPerTenant(redis, scenarioPrefix(keyPrefix, 'mem'))

    const deleted = await deleteKeys(redis, keyPrefix + ':*')
    log(`${deleted} Redis keys under ${keyPrefix}:* deleted`)

    const cpus = os.cpus()
    console.log(buildReport({
      scenarios,
      results,
      settings,
      commands: counted.commands,
      memory,
      env: {
        commandsOn: counted.where,
        cpus: { model: cpus[0]?.model?.trim() ?? 'unknown CPU', count: cpus.length },
        platform: os.platform(),
        redisVersion,
        redisUrl: redactUrl(REDIS_URL),
        cluster: cluster === undefined ? undefined : { ports: cluster.ports, version: cluster.version },
        load: [loadBefore, os.loadavg()[0]]
      }
    }))
  } catch (err) {
    problems.push(err.message)
  } finally {
    clearTimeout(watchdog)
    await Promise.all(children.map(stopServer))
    cluster?.stop()
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

/** The pid of the Redis under test when it runs on this machine (so its CPU time can be read), else null. */
function localRedisPid (serverInfo) {
  const pid = Number(/process_id:(\d+)/.exec(serverInfo)?.[1])
  const host = new URL(REDIS_URL).hostname
  if (!Number.isInteger(pid) || !['127.0.0.1', 'localhost', '[::1]', '::1'].includes(host)) return null
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('redis') && processCpuMicros(pid) !== null ? pid : null
  } catch {
    return null
  }
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

/** The scenarios named in BENCH_ONLY (in the table's order), all when unset; null on an unknown name. */
function selectScenarios (only) {
  const baseline = process.env.BENCH_BASELINE !== undefined && process.env.BENCH_BASELINE !== ''
  const available = SCENARIOS.filter((s) => baseline || s.baseline !== true)
  if (only === undefined || only.trim() === '') return available
  const names = new Set(only.split(',').map((n) => n.trim()).filter((n) => n !== ''))
  const unknown = [...names].filter((n) => !available.some((s) => s.name === n))
  if (unknown.length > 0 || names.size === 0) {
    console.error(`bench: BENCH_ONLY names unknown scenario(s) ${unknown.join(', ')}; known: ${available.map((s) => s.name).join(', ')}` +
      (baseline ? '' : ' (the baseline-* ones need BENCH_BASELINE)'))
    return null
  }
  return available.filter((s) => names.has(s.name))
}

function log (message) {
  console.error(`[bench] ${message}`)
}

/** Problems with one measurement: errors, and statuses the scenario must not answer. */
function checkRun ({ scenario, process: proc }, m, when) {
  const problems = []
  const where = `${scenario.name}, ${when}`
  if (scenario.expect === 'reject') {
    const other = Object.entries(m.statusCodes).filter(([code]) => code !== '200' && code !== '429')
    if (other.length > 0) problems.push(`${where}: statuses other than 200 and 429 ${JSON.stringify(m.statusCodes)}`)
    if ((m.statusCodes['429'] ?? 0) === 0) problems.push(`${where}: no 429 at all, the tenant was never over its limit`)
  } else if (m.non2xx > 0) {
    problems.push(`${where}: ${m.non2xx} non-2xx responses ${JSON.stringify(m.statusCodes)}`)
  }
  if (m.errors > 0 || m.timeouts > 0) problems.push(`${where}: ${m.errors} errors, ${m.timeouts} timeouts`)
  if (proc.exitCode !== null || proc.signalCode !== null) problems.push(`${scenario.name}: server exited during the run`)
  return problems
}

/**
 * Redis commands per request of the counted scenarios. On a private redis-server when one starts,
 * with fresh servers of those scenarios pointed at it (warmed up first, so that loading the scripts
 * is not counted), so that no other client's commands are counted; else on REDIS_URL with the
 * servers of the rounds. Returns { commands: { name: counts }, where }.
 */
async function measureCommands ({ scenarios, settings, serverEnv, children, problems, redis, childConnections }) {
  const countable = scenarios.filter((s) => COMMAND_COUNT_SCENARIOS.includes(s.name))
  const commands = {}
  if (countable.length === 0) return { commands, where: undefined }
  const run = async (child, client) => {
    const { connections } = settings
    const { tenants } = child.scenario
    log(`commands per request: ${child.scenario.name} (${settings.cmdRequests} requests)`)
    commands[child.scenario.name] = await countCommands(client, async () => {
      const m = await load(child, { amount: settings.cmdRequests, connections, tenants })
      problems.push(...checkRun(child, m, 'command count'))
      return m.requests
    })
  }

  const own = await startPrivateRedis()
  if (own === undefined) {
    for (const scenario of countable) await run(children.find((c) => c.scenario.name === scenario.name), redis)
    const others = await otherClients(redis, 1 + childConnections)
    return {
      commands,
      where: `on ${redactUrl(REDIS_URL)} (no redis-server binary for a private one)` +
        (others > 0 ? `; ${others} other client(s) were connected, and their commands, if any, are counted too` : '')
    }
  }
  try {
    for (const scenario of countable) {
      const child = await startServer(scenario, { ...serverEnv, REDIS_URL: own.url })
      children.push(child)
      try {
        await checkServer(child)
        const m = await load(child, { amount: settings.connections * 20, connections: settings.connections, tenants: scenario.tenants })
        problems.push(...checkRun(child, m, 'command count warm-up'))
        await run(child, own.client)
      } finally {
        await stopServer(child)
      }
    }
  } finally {
    await own.stop()
  }
  return { commands, where: `on a private redis-server ${own.version} on loopback started for the count` }
}

/** `env`: REDIS_URL, BENCH_KEY_PREFIX and BENCH_CLUSTER of the server (scripts/bench/server.mjs). */
function startServer (scenario, env) {
  const profileDir = process.env.BENCH_PROFILE
  const child = fork(SERVER, [scenario.name], {
    env: { ...process.env, ...env },
    // A CPU profile of each server, written when it stops (open it in Chrome's DevTools).
    execArgv: profileDir === undefined || profileDir === '' ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir, '--cpu-prof-name', `${scenario.name}.cpuprofile`],
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

async function get (child, headers = {}, status = 200) {
  const response = await fetch(`http://127.0.0.1:${child.port}${ROUTE}`, { headers, signal: AbortSignal.timeout(5000) })
  await response.arrayBuffer()
  if (response.status !== status) throw new Error(`${child.scenario.name}: GET ${ROUTE} answered ${response.status}`)
  return response.headers
}

/** One request before any load: status 200, and the limiter's headers where one is registered. */
async function checkServer (child) {
  const { scenario } = child
  const expectedStore = scenario.kind === 'plugin' ? scenario.store : null
  if (child.store !== expectedStore) throw new Error(`${scenario.name}: expected store ${expectedStore}, server reports ${child.store}`)
  // The replayed 429 is refused from the first request on.
  const headers = await get(child, {}, scenario.kind === 'replay429' ? 429 : 200)
  const expect = (name, value) => {
    if (headers.get(name) !== value) throw new Error(`${scenario.name}: ${name} is ${headers.get(name)}, expected ${value}`)
  }
  if (scenario.kind === 'plugin' && scenario.headers === false) {
    expect('x-ratelimit-limit', null)
    expect('x-ratelimit-concurrent-limit', null)
  } else if (scenario.kind === 'plugin' && scenario.headers === 'compact') {
    // The compact set: the minute window has the least left of the open tier.
    expect('x-ratelimit-limit', String(OPEN_TIER.requestsPerMinute))
    expect('x-ratelimit-concurrent-limit', null)
  } else if (scenario.kind === 'plugin') expect('x-ratelimit-concurrent-limit', String(OPEN_TIER.concurrentRequests))
  else if (scenario.kind === 'frl' || scenario.kind === 'rlf') expect('x-ratelimit-limit', String(PEER_MAX))
  else if (scenario.kind === 'replay429') expect('x-ratelimit-error', 'rate_limit_exceeded')
  else expect('x-ratelimit-limit', null)
  if (scenario.tenants !== undefined) {
    // The tenant comes from the header: a tenant never seen before has its whole minute left.
    const fresh = await get(child, { [TENANT_HEADER]: 'check-' + randomBytes(4).toString('hex') })
    const [header, limit] = scenario.kind === 'frl' ? ['x-ratelimit-remaining', PEER_MAX] : ['x-ratelimit-remaining-minute', OPEN_TIER.requestsPerMinute]
    const remaining = fresh.get(header)
    if (remaining !== String(limit - 1)) throw new Error(`${scenario.name}: ${TENANT_HEADER} is not used as the tenant (${header} ${remaining})`)
  }
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
