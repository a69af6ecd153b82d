#!/usr/bin/env node
// Accuracy replay: the same request traces through this plugin's sliding window, a fixed window and
// a two-bucket weighted sliding counter, each compared with an exact sliding log.
//   npm run accuracy            (memory store: the same decisions as the Lua script, proven in the suite)
//   npm run accuracy -- --redis (also replays through the Redis store, with the trace's clock)
// Prints, per trace and limiter: the most requests admitted in any window of the window's length as
// a multiple of the limit, and the shares of requests wrongly admitted (a window went over the limit)
// and wrongly rejected (refused although the window had room), judged on each limiter's own history.
import { Redis } from 'ioredis'
import { MemoryStore, RedisStore } from '../dist/index.js'
import { storeKeys } from '../dist/keys.js'

const WINDOW = 60_000
const LIMIT = 100
const START = Date.UTC(2026, 0, 5, 0, 0, 0) // on a bucket and window edge

// ---- traces: sorted offsets in ms ----
function steady (perSecond, seconds) {
  return Array.from({ length: perSecond * seconds }, (_, i) => Math.floor(i * 1000 / perSecond))
}
function bursty (size, everyMs, count) {
  const out = []
  for (let b = 0; b < count; b++) for (let i = 0; i < size; i++) out.push(b * everyMs + i * 5)
  return out
}
function edgeBurstThenDrip () {
  // A full burst in the last moments of one window, then a steady drip: the fixed-window killer.
  const burst = Array.from({ length: LIMIT }, (_, i) => WINDOW - 100 + i)
  return [...burst, ...Array.from({ length: 600 }, (_, i) => WINDOW + i * 200)]
}
function edgeBursts () {
  // Full bursts on every window edge, on both sides.
  const out = []
  for (let w = 1; w <= 8; w++) {
    for (let i = 0; i < LIMIT; i++) out.push(w * WINDOW - 50 + Math.floor(i / 2))
    for (let i = 0; i < LIMIT; i++) out.push(w * WINDOW + i)
  }
  return out.sort((a, b) => a - b)
}
function poisson (perSecond, seconds, seed) {
  let x = seed
  const rand = () => { x = (x * 1103515245 + 12345) % 2147483648; return (x + 1) / 2147483649 }
  const out = []
  let t = 0
  while (t < seconds * 1000) { t += -Math.log(rand()) * 1000 / perSecond; out.push(Math.floor(t)) }
  return out
}

const TRACES = {
  'steady 2/s (limit 100/min)': steady(2, 600),
  'bursty: 150 in 0.75 s every 45 s': bursty(150, 45_000, 14),
  'adversarial: burst at a window edge, then drip': edgeBurstThenDrip(),
  'adversarial: bursts on both sides of every edge': edgeBursts(),
  'random (Poisson 3/s)': poisson(3, 600, 7)
}

// ---- limiters: each answers admit(t) → boolean ----
function exactLog () {
  const admitted = []
  return t => {
    while (admitted.length > 0 && admitted[0] <= t - WINDOW) admitted.shift()
    if (admitted.length >= LIMIT) return false
    admitted.push(t)
    return true
  }
}
function fixedWindow () {
  let window = -1
  let count = 0
  return t => {
    const w = Math.floor(t / WINDOW)
    if (w !== window) { window = w; count = 0 }
    if (count >= LIMIT) return false
    count++
    return true
  }
}
function twoBucketCounter () {
  // The common "sliding window counter": previous window weighted by how much of it still overlaps.
  const counts = new Map()
  return t => {
    const w = Math.floor(t / WINDOW)
    const weight = 1 - (t - w * WINDOW) / WINDOW
    const estimate = (counts.get(w - 1) ?? 0) * weight + (counts.get(w) ?? 0)
    if (estimate + 1 > LIMIT) return false
    counts.set(w, (counts.get(w) ?? 0) + 1)
    return true
  }
}
function ours (store, keyPrefix) {
  const clock = { now: 0 }
  const s = store(clock)
  const keys = storeKeys(keyPrefix, 'tenant', 'replay', undefined)
  const limits = { requestsPerMinute: LIMIT, requestsPerHour: Infinity, concurrentRequests: Infinity, monthlyQuota: Infinity }
  const admit = async t => {
    clock.now = START + t
    return (await s.admit({ keys, cost: 1, limits, leaseId: '' })).allowed
  }
  admit.close = () => s.close()
  return admit
}

function maxInAnyWindow (times) {
  let best = 0
  let start = 0
  for (let end = 0; end < times.length; end++) {
    while (times[start] <= times[end] - WINDOW) start++
    best = Math.max(best, end - start + 1)
  }
  return best
}

/**
 * Each decision is judged against the limiter's own history: "wrongly admitted" made some window of
 * length WINDOW hold more than the limit; "wrongly rejected" was refused although that window had room.
 */
async function replay (trace, admit) {
  const admitted = []
  let start = 0
  let wronglyAdmitted = 0
  let wronglyRejected = 0
  for (const t of trace) {
    while (start < admitted.length && admitted[start] <= t - WINDOW) start++
    const room = admitted.length - start < LIMIT
    const yes = await admit(t)
    if (yes) admitted.push(t)
    if (yes && !room) wronglyAdmitted++
    if (!yes && room) wronglyRejected++
  }
  return {
    admitted: admitted.length,
    worst: maxInAnyWindow(admitted) / LIMIT,
    wronglyAdmitted: wronglyAdmitted / trace.length,
    wronglyRejected: wronglyRejected / trace.length
  }
}

const withRedis = process.argv.includes('--redis')
const redis = withRedis ? new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379') : undefined
const prefix = `accuracy-${process.pid}`
const limiters = {
  'exact sliding log': () => exactLog(),
  'fixed window': () => fixedWindow(),
  'two-bucket sliding counter': () => twoBucketCounter(),
  'maestro (20 buckets, memory)': () => ours(clock => new MemoryStore({ clock: () => clock.now }), prefix + 'm'),
  ...(redis !== undefined ? { 'maestro (20 buckets, Redis Lua)': () => ours(clock => new RedisStore({ client: redis, clock: () => clock.now }), prefix + 'r') } : {})
}

const pct = x => (x * 100).toFixed(1) + ' %'
let failed = false
console.log(`# Accuracy replay: limit ${LIMIT} per ${WINDOW / 1000} s window\n`)
console.log('| trace | limiter | requests | admitted | worst window ÷ limit | wrongly admitted | wrongly rejected |')
console.log('|---|---|---:|---:|---:|---:|---:|')
for (const [traceName, trace] of Object.entries(TRACES)) {
  for (const [name, make] of Object.entries(limiters)) {
    if (redis !== undefined) for (const key of await redis.keys(`${prefix}*`)) await redis.del(key)
    const admit = make()
    const r = await replay(trace, admit)
    await admit.close?.()
    if (name.startsWith('maestro') && r.worst > 1) failed = true
    console.log(`| ${traceName} | ${name} | ${trace.length} | ${r.admitted} | ${r.worst.toFixed(2)}× | ${pct(r.wronglyAdmitted)} | ${pct(r.wronglyRejected)} |`)
  }
}
if (redis !== undefined) {
  for (const key of await redis.keys(`${prefix}*`)) await redis.del(key)
  redis.disconnect()
}
console.log(failed ? '\nFAIL: this plugin admitted more than the limit in some window' : '\nThis plugin never admitted more than the limit in any window (documented bound: 1.00×).')
process.exit(failed ? 1 : 0)
