// The benchmark's markdown report: throughput table, unloaded latency (one connection), CPU per
// request, same-round pairs, Redis commands per request, Redis memory per tenant, and the targets.
import { BARE_ONE_CONNECTION, COMMAND_COUNT_SCENARIOS, NOT_MEASURED, PAIRS, SCENARIOS } from './scenarios.mjs'

const KIB = 1024
const labelOf = (name) => SCENARIOS.find((s) => s.name === name)?.label ?? name

export function median (values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

const ms = (value) => value.toFixed(2)
const us = (valueMs) => (valueMs * 1000).toFixed(0)
const int = (value) => Math.round(value).toLocaleString('en-US')

/** Per-round ratios of a to b (same round), or undefined when either did not run. */
function roundRatios (results, a, b) {
  if (results[a] === undefined || results[b] === undefined) return undefined
  return results[a].map((m, round) => m.rps / results[b][round].rps)
}

function ratioCell (ratios) {
  if (ratios === undefined) return '–'
  const spread = ratios.length > 1 ? ` (${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)})` : ''
  return `${median(ratios).toFixed(2)}×${spread}`
}

/** Median over rounds of a scenario's `key` (p99, mean) minus the reference's of the same round. */
function difference (results, name, reference, key) {
  if (results[reference] === undefined || results[name] === undefined) return undefined
  return median(results[name].map((m, round) => m[key] - results[reference][round][key]))
}

const addedP99 = (results, name) => difference(results, name, 'bare', 'p99')

function share429 (runs) {
  const all = runs.reduce((sum, m) => sum + Object.values(m.statusCodes).reduce((a, b) => a + b, 0), 0)
  const rejected = runs.reduce((sum, m) => sum + (m.statusCodes['429'] ?? 0), 0)
  return all === 0 ? 0 : rejected / all
}

/** Where each request's CPU time lands: the server under test, Redis, the load generator (medians over rounds). */
function cpuTable (scenarios, results) {
  const cell = (runs, key) => {
    const values = runs.map((m) => m.cpu?.[key]).filter((v) => typeof v === 'number')
    return values.length === 0 ? undefined : median(values)
  }
  const rows = []
  for (const scenario of scenarios) {
    const runs = results[scenario.name]
    const server = cell(runs, 'server')
    if (server === undefined) continue
    const redis = cell(runs, 'redis')
    const loadgen = cell(runs, 'loadgen')
    const total = server + (redis ?? 0) + loadgen
    rows.push(`| ${scenario.label} | ${server.toFixed(1)} | ${redis === undefined ? '–' : redis.toFixed(1)} | ${loadgen.toFixed(1)} | ${total.toFixed(1)} |`)
  }
  if (rows.length === 0) return []
  return [
    '', '### CPU time per request', '',
    'User and system CPU time of each process during the measured runs, divided by the requests served (µs, median ' +
      'over rounds; from /proc, so Linux only; Redis only when it runs on this machine, and on the Redis Cluster the ' +
      'sum over its three masters). The three share the machine: time one of them spends is time the others do not get.',
    '',
    '| scenario | server (µs) | Redis (µs) | load generator (µs) | total (µs) |',
    '|---|---:|---:|---:|---:|',
    ...rows
  ]
}

/** The one-connection scenarios: latency with no load, and what each adds to bare Fastify's at one connection. */
function latencyTable (scenarios, results) {
  const rows = scenarios.filter((s) => s.connections !== undefined).map(({ name, label }) => {
    const runs = results[name]
    const over = (key) => {
      const value = name === BARE_ONE_CONNECTION ? undefined : difference(results, name, BARE_ONE_CONNECTION, key)
      return value === undefined ? '–' : us(value)
    }
    const of = (key) => us(median(runs.map((m) => m[key])))
    return `| ${label} | ${int(median(runs.map((m) => m.rps)))} | ${of('mean')} | ${of('p50')} | ${of('p99')} | ` +
      `${over('mean')} | ${over('p99')} | ${int(runs.reduce((sum, m) => sum + m.non2xx, 0))} |`
  })
  if (rows.length === 0) return []
  return [
    '', '### Unloaded latency (one connection)', '',
    'One connection of the load generator, one request at a time (no pipelining), so nothing waits for anything but ' +
      'this request. Latencies are medians over rounds; added mean and added p99 are the median over rounds of the ' +
      'scenario\'s mean or p99 minus bare Fastify\'s at one connection in the same round.',
    '',
    '| scenario | req/s | mean (µs) | p50 (µs) | p99 (µs) | added mean (µs) | added p99 (µs) | non-2xx |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows
  ]
}

export function buildReport ({ scenarios, results, settings, env, commands, memory }) {
  const lines = []
  const cpu = env.cpus
  const cluster = env.cluster === undefined
    ? ''
    : ` The Redis Cluster: three masters (Redis ${env.cluster.version}) on 127.0.0.1:${env.cluster.ports.join(', ')}, started for the run.`
  lines.push(
    `Node ${process.version}; ${cpu.count} × ${cpu.model}; ${env.platform}; Redis ${env.redisVersion} on ${env.redisUrl}.${cluster}`,
    `${settings.rounds} rounds × ${scenarios.length} scenarios × ${settings.duration} s, ${settings.connections} connections` +
      `${scenarios.some((s) => s.connections !== undefined) ? ' (one for the one-connection scenarios)' : ''}, ` +
      `${settings.warmup} s warm-up per scenario; scenarios interleaved in a rotating order in every round.`,
    'Every server in a child process of its own on 127.0.0.1; autocannon in the parent. req/s, p50 and p99 are medians ' +
      'over rounds; each ratio is the median of per-round ratios to the reference measured in the same round (range ' +
      'over rounds in brackets); added p99 is the median over rounds of p99 minus bare Fastify\'s p99 of that round.',
    `1-minute load average ${env.load[0].toFixed(2)} before, ${env.load[1].toFixed(2)} after.`,
    '',
    '### Throughput and latency',
    '',
    '| scenario | req/s | p50 (ms) | p99 (ms) | added p99 (ms) | × bare Fastify | × @fastify/rate-limit Redis | non-2xx |',
    '|---|---:|---:|---:|---:|---:|---:|---:|'
  )
  for (const scenario of scenarios.filter((s) => s.connections === undefined)) {
    const runs = results[scenario.name]
    const added = scenario.name === 'bare' ? undefined : addedP99(results, scenario.name)
    const status = scenario.expect === 'reject'
      ? `429: ${(100 * share429(runs)).toFixed(2)} %`
      : int(runs.reduce((sum, m) => sum + m.non2xx, 0))
    lines.push(`| ${scenario.label} | ${int(median(runs.map((m) => m.rps)))} | ${ms(median(runs.map((m) => m.p50)))} | ` +
      `${ms(median(runs.map((m) => m.p99)))} | ${added === undefined ? '–' : ms(added)} | ` +
      `${scenario.name === 'bare' ? '1.00×' : ratioCell(roundRatios(results, scenario.name, 'bare'))} | ` +
      `${scenario.name === 'frl-redis' ? '1.00×' : ratioCell(roundRatios(results, scenario.name, 'frl-redis'))} | ${status} |`)
  }
  for (const { label } of NOT_MEASURED) lines.push(`| ${label} | not measured | | | | | | |`)
  lines.push('')
  for (const { label, reason } of NOT_MEASURED) lines.push(`${label} is not measured: ${reason}.`)

  lines.push(...latencyTable(scenarios, results))
  lines.push(...cpuTable(scenarios, results))

  const pairs = PAIRS.filter(([a, b]) => results[a] !== undefined && results[b] !== undefined)
  if (pairs.length > 0) {
    lines.push('', '### Same-round comparisons', '', '| comparison | req/s ratio | p99 difference (ms) |', '|---|---:|---:|')
    for (const [a, b, label] of pairs) {
      const p99 = difference(results, a, b, 'p99')
      lines.push(`| ${label} | ${ratioCell(roundRatios(results, a, b))} | ${p99 >= 0 ? '+' : ''}${ms(p99)} |`)
    }
  }

  if (Object.keys(commands).length > 0) {
    lines.push(
      '', '### Redis commands per request', '',
      `A dedicated run of ${int(settings.cmdRequests)} requests per scenario, ${env.commandsOn}, between ` +
        '`CONFIG RESETSTAT` and `INFO commandstats`: every command Redis executed, including those a script runs, ' +
        'divided by the requests served. This plugin\'s count includes giving the concurrency lease back (HDEL) ' +
        'after the response; it sends the admissions of one event-loop turn as one script call, so its script calls ' +
        'per request are below one. µs in scripts: the time Redis reports for running the scripts (the commands ' +
        'inside included), per request.',
      '',
      '| scenario | requests | commands / request | script calls / request | µs in scripts / request | by command (calls / request) |',
      '|---|---:|---:|---:|---:|---|'
    )
    for (const name of COMMAND_COUNT_SCENARIOS) {
      const c = commands[name]
      if (c === undefined) continue
      const by = Object.entries(c.calls)
        .map(([command, calls]) => [command, calls / c.served])
        .filter(([, perRequest]) => perRequest >= 0.0005)
        .sort((x, y) => y[1] - x[1] || x[0].localeCompare(y[0]))
        .map(([command, perRequest]) => `${command} ${perRequest.toFixed(perRequest < 0.1 ? 3 : 2)}`)
        .join(', ')
      lines.push(`| ${labelOf(name)} | ${int(c.served)} | ${c.perRequest.toFixed(c.perRequest < 0.1 ? 4 : 2)} | ` +
        `${c.scriptsPerRequest.toFixed(c.scriptsPerRequest < 0.1 ? 4 : 2)} | ${c.scriptUsecPerRequest.toFixed(2)} | ${by === '' ? 'none' : by} |`)
    }
  }

  if (memory.length > 0) {
    lines.push(
      '', '### Redis memory per active tenant', '',
      'One tenant per default tier, replayed on the store\'s clock over the last 60 simulated minutes: its hour limit ' +
        'spread over the hour (every hour bucket present), one request per minute bucket in the last minute (as many ' +
        'as the minute limit allows), the month\'s counter, and one lease still held. Bytes: the sum of ' +
        '`MEMORY USAGE <key> SAMPLES 0` over every key of the tenant (`SCAN MATCH <prefix>:v1:{t:<id>}:*`).',
      '',
      '| tier | per minute / hour / concurrent / month | requests admitted | keys | hash fields | leases held | bytes | ≤ 1 KiB |',
      '|---|---|---:|---:|---:|---:|---:|:---:|'
    )
    for (const row of memory) {
      const l = row.limits
      lines.push(`| ${row.tier} | ${[l.requestsPerMinute, l.requestsPerHour, l.concurrentRequests, l.monthlyQuota].map(int).join(' / ')} | ` +
        `${int(row.admitted)}${row.rejected > 0 ? ` (${int(row.rejected)} rejected)` : ''} | ${row.keys} | ${row.fields} | ${row.leases} | ` +
        `${int(row.bytes)} | ${row.bytes <= KIB ? 'yes' : 'no'} |`)
    }
  }

  lines.push('', '### Targets', '', '| target | measured | met |', '|---|---|:---:|')
  for (const target of targets({ results, settings, commands, memory })) lines.push(`| ${target.what} | ${target.measured} | ${target.met} |`)
  return lines.join('\n')
}

function targets ({ results, settings, commands, memory }) {
  const out = []
  const notRun = (what, needs) => out.push({ what, measured: `not measured in this run (needs ${needs})`, met: '–' })

  const vsPeer = roundRatios(results, 'redis', 'frl-redis')
  if (vsPeer === undefined) {
    notRun('Redis path ≥ 1.0× @fastify/rate-limit Redis (aim 1.3×)', 'redis, frl-redis')
  } else {
    const r = median(vsPeer)
    out.push({
      what: 'Redis path ≥ 1.0× @fastify/rate-limit Redis (aim 1.3×)',
      measured: `${r.toFixed(2)}×`,
      met: r >= 1.3 ? 'yes, aim too' : r >= 1.0 ? 'yes (aim not reached)' : 'no'
    })
  }

  const overVsBare = roundRatios(results, 'redis-over-limit', 'bare')
  if (overVsBare === undefined) {
    notRun('over-limit tenant answered at ≥ 0.9× bare Fastify with no Redis call', 'redis-over-limit, bare')
  } else {
    const r = median(overVsBare)
    const c = commands['redis-over-limit']
    const calls = c === undefined ? undefined : c.scriptsPerRequest
    out.push({
      what: 'over-limit tenant answered at ≥ 0.9× bare Fastify with no Redis call',
      measured: `${r.toFixed(2)}× bare; ${calls === undefined ? 'Redis calls not counted' : `${calls.toFixed(4)} script calls and ${c.perRequest.toFixed(4)} Redis commands per request`}`,
      met: r >= 0.9 && (calls === undefined || calls < 0.01) ? 'yes' : 'no'
    })
  }

  const added = addedP99(results, 'redis')
  const at = `at ${settings.connections} connections${settings.connections === 50 ? '' : ' (the target is stated for 50)'}`
  if (added === undefined) {
    notRun('added p99 ≤ 2 ms at 50 connections (Redis path)', 'redis, bare')
  } else {
    out.push({ what: 'added p99 ≤ 2 ms at 50 connections (Redis path)', measured: `${ms(added)} ms ${at}`, met: added <= 2 ? 'yes' : 'no' })
  }

  const alertsOn = roundRatios(results, 'redis', 'redis-no-alerts')
  if (alertsOn === undefined) {
    notRun('quota alerts on ≥ 0.97× off (Redis path)', 'redis, redis-no-alerts')
  } else {
    const r = median(alertsOn)
    out.push({ what: 'quota alerts on ≥ 0.97× off (Redis path)', measured: `${r.toFixed(2)}×`, met: r >= 0.97 ? 'yes' : 'no' })
  }

  const levels = roundRatios(results, 'redis-levels', 'redis')
  if (levels === undefined) {
    notRun('an organization and a shared route budget on every request ≥ 0.85× the plain Redis path', 'redis, redis-levels')
  } else {
    const r = median(levels)
    out.push({ what: 'an organization and a shared route budget on every request ≥ 0.85× the plain Redis path', measured: `${r.toFixed(2)}×`, met: r >= 0.85 ? 'yes' : 'no' })
  }

  if (memory.length === 0) {
    notRun('Redis memory ≤ 1 KiB per active tenant on the default tiers', 'the memory measurement')
  } else {
    const worst = memory.reduce((a, b) => (b.bytes > a.bytes ? b : a))
    out.push({
      what: 'Redis memory ≤ 1 KiB per active tenant on the default tiers',
      measured: `largest: ${int(worst.bytes)} bytes (${worst.tier})`,
      met: worst.bytes <= KIB ? 'yes' : 'no'
    })
  }
  return out
}
