#!/usr/bin/env node
// The console's tenants table with many tenants: writes N usage records of this month (default
// 100,000) under a fresh prefix, serves the admin routes over them, and times GET /tenants: the
// first page (which builds the index), then pages by each sort, a search, a deep page and a page
// while the index rebuilds. Prints each time and the heap the index holds. Deletes what it wrote.
//   npm run build && node scripts/console-index-100k.mjs [tenants]
import { randomBytes } from 'node:crypto'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import rateLimiting from '../dist/index.js'
import rateLimitAdmin from '../dist/admin.js'
import { subjectBase } from '../dist/keys.js'

const tenants = Number(process.argv[2] ?? 100_000)
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const prefix = 'console-index-' + randomBytes(4).toString('hex')
const month = new Date().toISOString().slice(0, 7).replace('-', '')
const redis = new Redis(url)
const app = Fastify()

async function timed (path) {
  const started = performance.now()
  const reply = await app.inject({ url: '/admin' + path })
  const ms = performance.now() - started
  if (reply.statusCode !== 200) throw new Error(`${path}: ${reply.statusCode} ${reply.body}`)
  const { total, rows } = reply.json()
  console.log(`${path.padEnd(52)} ${ms.toFixed(1).padStart(8)} ms  (${total} tenants, ${rows.length} rows)`)
  return ms
}

try {
  const started = Date.now()
  for (let from = 0; from < tenants; from += 10_000) {
    const pipeline = redis.pipeline()
    for (let i = from; i < Math.min(tenants, from + 10_000); i++) {
      const key = subjectBase(prefix, 'tenant', `tenant-${i}`) + 'usage:' + month
      pipeline.hset(key, { id: `tenant-${i}`, scope: 'tenant', tier: 'starter', q: String(i % 10_000), quota: '10000' }).expire(key, 3600)
    }
    await pipeline.exec()
  }
  console.log(`${tenants} usage records written in ${Date.now() - started} ms`)

  await app.register(rateLimiting, { redis, keyPrefix: prefix, tenantExtractor: () => null })
  await app.register(rateLimitAdmin, { prefix: '/admin', authorize: () => {} })
  await app.ready()
  global.gc?.()
  const heapBefore = process.memoryUsage().heapUsed
  await timed('/tenants?limit=50')
  global.gc?.()
  console.log(`heap held by the index: ${((process.memoryUsage().heapUsed - heapBefore) / 1e6).toFixed(1)} MB${global.gc === undefined ? ' (run with --expose-gc for an exact figure)' : ''}`)
  await timed('/tenants?limit=50')
  await timed('/tenants?sort=tenantId&order=asc&limit=50')
  await timed('/tenants?sort=tenantId&order=asc&offset=50&limit=50')
  await timed('/tenants?sort=used&order=desc&limit=50')
  await timed('/tenants?sort=tier&limit=50')
  await timed('/tenants?search=99&limit=50')
  await timed(`/tenants?sort=share&order=asc&offset=${Math.max(0, tenants - 100)}&limit=50`)
  await timed('/tenants?limit=200')
} finally {
  await app.close()
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', prefix + ':*', 'COUNT', 10_000)
    cursor = next
    if (keys.length > 0) await redis.unlink(...keys)
  } while (cursor !== '0')
  redis.disconnect()
}
