// CPU time per process (Linux /proc): where each request's cost lands, as the server under test,
// Redis and the load generator share one machine. Elsewhere every reading is null and the report
// leaves the table out.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

let ticksPerSecond
function clockTicks () {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
    } catch {
      ticksPerSecond = 100
    }
  }
  return ticksPerSecond
}

/** User + system CPU time of a process in µs, or null when it cannot be read (not Linux, gone). */
export function processCpuMicros (pid) {
  if (pid === undefined || pid === null) return null
  try {
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 1e6 / clockTicks()
  } catch {
    return null
  }
}

/** This process's own CPU time in µs (the load generator). */
export function ownCpuMicros () {
  const { user, system } = process.cpuUsage()
  return user + system
}

/**
 * Readings of the server, Redis and this process. `redisPids`: Redis's local processes (one, or the
 * masters of a Cluster), summed; null when there are none or one cannot be read.
 */
export function sampleCpu (serverPid, redisPids) {
  const redis = redisPids.map(processCpuMicros)
  return {
    server: processCpuMicros(serverPid),
    redis: redis.length === 0 || redis.includes(null) ? null : redis.reduce((a, b) => a + b),
    loadgen: ownCpuMicros()
  }
}

/** µs of CPU per request of each process between two samples (null where unreadable). */
export function cpuPerRequest (before, after, requests) {
  const per = (key) => before[key] === null || after[key] === null || requests === 0 ? null : (after[key] - before[key]) / requests
  return { server: per('server'), redis: per('redis'), loadgen: per('loadgen') }
}
