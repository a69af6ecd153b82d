#!/usr/bin/env node
// `maestro-rl usage export` of many tenants: writes N usage records (default 100,000) under a fresh
// prefix, exports them as CSV and as JSON Lines to files under a V8 heap capped at 32 MB, and prints
// the rows, the time and the peak RSS of each run (from /usr/bin/time -v). Deletes what it wrote.
//   npm run build && node scripts/usage-export-100k.mjs [tenants]
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { PolicyManager } from '../dist/index.js'
import { subjectBase } from '../dist/keys.js'

const tenants = Number(process.argv[2] ?? 100_000)
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const cli = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const prefix = 'usage-export-' + randomBytes(4).toString('hex')
const redis = new Redis(url)
const dir = mkdtempSync(join(tmpdir(), 'maestro-rl-export-'))

async function exportTo (file, format) {
  const out = createWriteStream(file)
  await new Promise(resolve => out.once('open', resolve))
  const started = Date.now()
  const child = spawn('/usr/bin/time', ['-v', process.execPath, '--max-old-space-size=32', cli, 'usage', 'export', '--month', '2026-12', '--format', format, '--prefix', prefix],
    { env: { ...process.env, NODE_OPTIONS: undefined, REDIS_URL: url }, stdio: ['ignore', out, 'pipe'] })
  let stderr = ''
  child.stderr.on('data', chunk => { stderr += chunk })
  const code = await new Promise(resolve => child.once('close', resolve))
  out.close()
  if (code !== 0) throw new Error(`export exited ${code}: ${stderr}`)
  const peakKb = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)?.[1])
  const text = readFileSync(file, 'utf8')
  const rows = text.split(format === 'csv' ? '\r\n' : '\n').filter(line => line !== '').length - (format === 'csv' ? 1 : 0)
  return { rows, ms: Date.now() - started, mb: statSync(file).size / 1e6, peakMb: peakKb / 1024 }
}

try {
  // A service has booted on the prefix (it records its tiers), as maestro-rl expects.
  const policies = new PolicyManager(redis, { keyPrefix: prefix })
  await policies.start()
  await policies.recordConfiguredTiers()
  await policies.close()
  const started = Date.now()
  for (let from = 0; from < tenants; from += 10_000) {
    const pipeline = redis.pipeline()
    for (let i = from; i < Math.min(tenants, from + 10_000); i++) {
      const key = subjectBase(prefix, 'tenant', `tenant-${i}`) + 'usage:202612'
      pipeline.hset(key, { id: `tenant-${i}`, scope: 'tenant', tier: 'starter', q: String(i), quota: '1000000' }).expire(key, 3600)
    }
    await pipeline.exec()
  }
  console.log(`${tenants} records written in ${Date.now() - started} ms`)
  for (const format of ['csv', 'json']) {
    const { rows, ms, mb, peakMb } = await exportTo(join(dir, `usage.${format}`), format)
    console.log(`${format}: ${rows} rows (${mb.toFixed(1)} MB) in ${ms} ms, peak RSS ${peakMb.toFixed(1)} MB`)
  }
} finally {
  let cursor = '0'
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5000)
    cursor = next
    if (keys.length > 0) await redis.unlink(...keys)
  } while (cursor !== '0')
  redis.disconnect()
  rmSync(dir, { recursive: true, force: true })
}
