// A month's usage report as billing reads it: CSV (RFC 4180 quoting of hostile ids) and JSON Lines,
// through the admin route (inject and a real listener) and `maestro-rl usage export` (a child
// process), and 100,000 tenants exported in bounded memory.
import { spawn } from 'node:child_process'
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Redis } from 'ioredis'
import t from 'tap'
import rateLimitAdmin from '../dist/admin.js'
import rateLimiting from '../dist/index.js'
import { csvRow, USAGE_CSV_HEADER } from '../dist/usage-format.js'
import { listen } from './helpers/app.js'
import { cliFor, run } from './helpers/cli.js'
import { REDIS_URL, sharedRedis, uniquePrefix } from './helpers/redis.js'
import { expectedRows, sorted, writeUsage, type StoredUsage } from './helpers/usage-records.js'

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url))
const HOSTILE = ['a,b', 'say "hi"', '"', 'line\nbreak', 'cr\r\nlf', ' padded ', '=SUM(A1)', 'ünïcode ✓', '', ',,,', '{t:x}*?']

const RECORDS: StoredUsage[] = [
  { scope: 'tenant', id: 'acme', tier: 'professional', q: 1234, quota: 100_000, buckets: { search: { used: 40, quota: 50 }, 'a,"b"': { used: 1, quota: 2 } } },
  { scope: 'organization', id: 'globex', tier: 'enterprise', q: 7 },
  ...HOSTILE.map((id, i) => ({ scope: 'tenant' as const, id, tier: 'starter', q: i, quota: 100 }))
]
const EXPECTED = sorted(RECORDS.flatMap(expectedRows))

/** RFC 4180: the rows of a CSV text (CRLF between records; quoted fields may hold anything). */
function parseCsv (text: string): string[][] {
  const rows: string[][] = []
  let row: string[] = []
  let field = ''
  let i = 0
  while (i < text.length) {
    if (text[i] === '"' && field === '') {
      i++
      for (;;) {
        if (i >= text.length) throw new Error('unterminated quoted field')
        if (text[i] === '"' && text[i + 1] === '"') { field += '"'; i += 2 } else if (text[i] === '"') { i++; break } else field += text[i++]
      }
      if (i < text.length && text[i] !== ',' && text[i] !== '\r') throw new Error(`text after a quoted field at ${i}`)
    } else if (text[i] === ',') {
      row.push(field); field = ''; i++
    } else if (text[i] === '\r' && text[i + 1] === '\n') {
      row.push(field); rows.push(row); row = []; field = ''; i += 2
    } else if (text[i] === '"' || text[i] === '\n' || text[i] === '\r') {
      throw new Error(`bare ${JSON.stringify(text[i])} in an unquoted field at ${i}`)
    } else field += text[i++]
  }
  if (field !== '' || row.length > 0) throw new Error('the last record does not end with CRLF')
  return rows
}

/** CSV rows back as report rows (empty fields: null; numbers as numbers). */
function fromCsv (text: string): Array<Record<string, unknown>> {
  const [header, ...rows] = parseCsv(text)
  const names = header
  return rows.map(cells => {
    const row = Object.fromEntries(names.map((name, i) => [name, cells[i]])) as Record<string, string>
    return {
      tenantId: row.tenantId,
      scope: row.scope,
      tier: row.tier === '' ? null : row.tier,
      bucket: row.bucket === '' ? null : row.bucket,
      used: Number(row.used),
      quota: row.quota === '' ? null : Number(row.quota)
    }
  })
}

const fromJsonLines = (text: string): Array<Record<string, unknown>> => text.split('\n').filter(line => line !== '').map(line => JSON.parse(line))

async function writeRecords (redis: Redis, prefix: string, records: StoredUsage[], yyyymm = '202612'): Promise<void> {
  const pipeline = redis.pipeline()
  for (const usage of records) writeUsage(pipeline, prefix, usage, yyyymm)
  await pipeline.exec()
}

t.test('CSV: a header line, every field quoted where it must be; hostile ids come back as they were', async t => {
  t.equal(USAGE_CSV_HEADER, 'scope,tenantId,tier,bucket,used,quota\r\n')
  const rows = RECORDS.flatMap(expectedRows) as any[]
  const text = USAGE_CSV_HEADER + rows.map(row => csvRow(row)).join('')
  const parsed = parseCsv(text)
  t.equal(parsed.length, rows.length + 1, 'one record per row, line breaks inside ids included')
  t.ok(parsed.every(cells => cells.length === 6), 'six fields in every record, commas inside ids included')
  t.same(sorted(fromCsv(text)), EXPECTED)
  t.equal(csvRow({ scope: 'tenant', tenantId: 'say "hi"', tier: null, bucket: null, used: 1, quota: null }), 'tenant,"say ""hi""",,,1,\r\n')
  t.equal(csvRow({ scope: 'tenant', tenantId: 'plain', tier: 'gold', bucket: 'b', used: 0, quota: 5 }), 'tenant,plain,gold,b,0,5\r\n')
})

async function adminApp (t: { teardown (fn: () => unknown): void }, redis: Redis, prefix: string): Promise<FastifyInstance> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { redis, keyPrefix: prefix })
  await app.register(rateLimitAdmin, {
    prefix: '/admin',
    authorize: request => { if (request.headers['x-admin-token'] !== 'secret') throw Object.assign(new Error('admin token required'), { statusCode: 401 }) }
  })
  return app
}

t.test('GET /usage: JSON Lines, or CSV for Accept text/csv; a bad month is a 400 naming it', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  await writeRecords(redis, prefix, RECORDS)
  const app = await adminApp(t, redis, prefix)
  const headers = { 'x-admin-token': 'secret' }

  const json = await app.inject({ url: '/admin/usage?month=2026-12', headers })
  t.equal(json.statusCode, 200)
  t.match(json.headers['content-type'], /^application\/x-ndjson/)
  t.same(sorted(fromJsonLines(json.body)), EXPECTED)
  t.equal(json.body.split('\n').length, EXPECTED.length + 1, 'one line per row, each ending with a line break')

  for (const accept of ['text/csv', 'application/json;q=0.5, text/csv', 'text/*, text/csv;q=0.9']) {
    const csv = await app.inject({ url: '/admin/usage?month=2026-12', headers: { ...headers, accept } })
    t.equal(csv.statusCode, 200)
    t.match(csv.headers['content-type'], /^text\/csv/, `Accept: ${accept}`)
    t.ok(csv.body.startsWith(USAGE_CSV_HEADER))
    t.same(sorted(fromCsv(csv.body)), EXPECTED)
  }
  for (const accept of ['application/x-ndjson, text/csv;q=0.5', 'text/csv;q=0', '*/*']) {
    const res = await app.inject({ url: '/admin/usage?month=2026-12', headers: { ...headers, accept } })
    t.match(res.headers['content-type'], /^application\/x-ndjson/, `Accept: ${accept}`)
  }

  const empty = await app.inject({ url: '/admin/usage?month=2027-01', headers })
  t.equal(empty.statusCode, 200)
  t.equal(empty.body, '')
  const emptyCsv = await app.inject({ url: '/admin/usage?month=2027-01', headers: { ...headers, accept: 'text/csv' } })
  t.equal(emptyCsv.body, USAGE_CSV_HEADER, 'an empty month is its header alone')

  for (const query of ['month=2026-13', 'month=2026-1', 'month=', 'month=2026-12&month=2026-11']) {
    const bad = await app.inject({ url: '/admin/usage?' + query, headers })
    t.equal(bad.statusCode, 400, query)
    t.equal(bad.json().code, 'FST_MAESTRO_RL_INVALID_POLICY')
    t.match(bad.json().message, /month/, query)
  }
  const missing = await app.inject({ url: '/admin/usage', headers })
  t.equal(missing.statusCode, 400)
  t.match(missing.json().message, /month is required/)
  const extra = await app.inject({ url: '/admin/usage?month=2026-12&tenant=acme', headers })
  t.equal(extra.statusCode, 400)
  t.match(extra.json().message, /tenant is not a known field/)
  const refused = await app.inject({ url: '/admin/usage?month=2026-12' })
  t.equal(refused.statusCode, 401, 'authorize runs first')
})

t.test('GET /usage over a real socket: streamed, chunked, complete', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const many: StoredUsage[] = [...RECORDS]
  for (let i = 0; i < 3000; i++) many.push({ scope: 'tenant', id: `tenant-${i}`, tier: 'starter', q: i, quota: 5000 })
  await writeRecords(redis, prefix, many)
  const app = await adminApp(t, redis, prefix)
  const port = await listen(app)
  const expected = sorted(many.flatMap(expectedRows))

  const csv = await fetch(`http://127.0.0.1:${port}/admin/usage?month=2026-12`, { headers: { 'x-admin-token': 'secret', accept: 'text/csv' } })
  t.equal(csv.status, 200)
  t.equal(csv.headers.get('transfer-encoding'), 'chunked', 'written as it is read, not sized up front')
  t.same(sorted(fromCsv(await csv.text())), expected)

  const json = await fetch(`http://127.0.0.1:${port}/admin/usage?month=2026-12`, { headers: { 'x-admin-token': 'secret' } })
  t.equal(json.headers.get('content-type'), 'application/x-ndjson; charset=utf-8')
  t.same(sorted(fromJsonLines(await json.text())), expected)
})

t.test('maestro-rl usage export: CSV by default, JSON Lines with --format json; bad input exits 2', async t => {
  const { cli, prefix } = cliFor(t)
  const redis = sharedRedis(t)
  await writeRecords(redis, prefix, RECORDS)

  const csv = await cli('usage', 'export', '--month', '2026-12')
  t.equal(csv.code, 0, csv.stderr)
  t.ok(csv.stdout.startsWith('scope,tenantId,tier,bucket,used,quota\r\n'))
  t.same(sorted(fromCsv(csv.stdout)), EXPECTED)
  // The same rows again; SCAN's order may differ between runs while other keys come and go.
  t.same(sorted(fromCsv((await cli('usage', 'export', '--month', '2026-12', '--format', 'csv')).stdout)), sorted(fromCsv(csv.stdout)))

  const json = await cli('usage', 'export', '--month', '2026-12', '--format', 'json')
  t.equal(json.code, 0, json.stderr)
  t.same(sorted(fromJsonLines(json.stdout)), EXPECTED)

  for (const [args, message] of [
    [['usage', 'export'], /usage export needs --month YYYY-MM/],
    [['usage', 'export', '--month', '2026-13'], /month must be a month as YYYY-MM/],
    [['usage', 'export', '--month', '2026-12', '--format', 'xml'], /--format must be csv or json \(got "xml"\)/],
    [['usage', 'export', '--month', '2026-12', '--tier', 'gold'], /usage export does not take --tier/]
  ] as const) {
    const bad = await cli(...args)
    t.equal(bad.code, 2, args.join(' '))
    t.match(bad.stderr, message)
    t.equal(bad.stdout, '')
  }
  await redis.hset(`${prefix}:v1:{t:broken}:usage:202612`, { id: 'broken', scope: 'tenant', q: 'one' })
  await redis.expire(`${prefix}:v1:{t:broken}:usage:202612`, 3600)
  const broken = await cli('usage', 'export', '--month', '2026-12')
  t.equal(broken.code, 1, 'a record that does not fit fails the export: no bill leaves a subject out silently')
  t.match(broken.stderr, /usage record .*\{t:broken\}:usage:202612: field q must be a whole number/)
  const help = await run(['help'])
  t.match(help.stdout, /usage export --month YYYY-MM \[--format csv\|json\]/)
  t.match(help.stdout, /JSON Lines/)
  const unused = await run(['usage', 'export', '--month', '2026-12', '--prefix', uniquePrefix(t)])
  t.equal(unused.code, 3, 'a prefix nothing is stored under is refused, as other reads are')
})

/**
 * 20,000 tenants, each with an id of 3 KB (hashed in its key, kept whole in the record): 60 MB of
 * ids, which a CLI holding every row could not keep under a 48 MB heap, while one page at a time
 * fits (about 15 MB at start, and up to 15 MB more for the page being read and the one before). 100,000 take longer than the suite allows: `node scripts/usage-export-100k.mjs` runs them.
 */
const TENANTS = 20_000
const PADDING = 'x'.repeat(3000)
const TIME = '/usr/bin/time'

t.test(`maestro-rl usage export of ${TENANTS.toLocaleString('en')} tenants with 3 KB ids: every row, under a 48 MB heap`, async t => {
  const { cli, prefix } = cliFor(t)
  const redis = sharedRedis(t)
  t.teardown(async () => {
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 5000)
      cursor = next
      if (keys.length > 0) await redis.unlink(...keys)
    } while (cursor !== '0')
  })
  await cli('tier', 'list') // a service booted on the prefix before the records are written
  const written = Date.now()
  for (let from = 0; from < TENANTS; from += 5000) {
    const pipeline = redis.pipeline()
    for (let i = from; i < from + 5000; i++) writeUsage(pipeline, prefix, { scope: 'tenant', id: `tenant-${i}-${PADDING}`, tier: 'starter', q: i, quota: 1_000_000 }, '202612')
    await pipeline.exec()
  }
  t.comment(`${TENANTS} records written in ${Date.now() - written} ms`)

  const dir = mkdtempSync(join(tmpdir(), 'maestro-rl-export-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const timed = existsSync(TIME)
  for (const format of ['csv', 'json']) {
    const file = join(dir, `usage.${format}`)
    const out = createWriteStream(file)
    await new Promise(resolve => out.once('open', resolve))
    const started = Date.now()
    const node = [process.execPath, '--max-old-space-size=48', CLI, 'usage', 'export', '--month', '2026-12', '--format', format, '--prefix', prefix]
    const child = spawn(timed ? TIME : node[0], timed ? ['-v', ...node] : node.slice(1),
      { env: { ...process.env, NODE_OPTIONS: undefined, REDIS_URL }, stdio: ['ignore', out, 'pipe'] })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const code = await new Promise<number | null>(resolve => child.once('close', resolve))
    const ms = Date.now() - started
    out.close()
    t.equal(code, 0, `${format}: exit 0 under a 48 MB heap ${code === 0 ? '' : stderr.slice(0, 2000)}`)
    const lines = readFileSync(file, 'utf8').split(format === 'csv' ? '\r\n' : '\n').filter(line => line !== '')
    const rows = lines.slice(format === 'csv' ? 1 : 0)
    t.equal(rows.length, TENANTS, `${format}: a line per tenant`)
    const ids = new Set(rows.map(line => format === 'csv' ? line.split(',')[1] : JSON.parse(line).tenantId))
    t.equal(ids.size, TENANTS, `${format}: every tenant once`)
    t.ok(ids.has(`tenant-0-${PADDING}`) && ids.has(`tenant-${TENANTS - 1}-${PADDING}`), `${format}: ids whole`)
    const peak = /Maximum resident set size \(kbytes\): (\d+)/.exec(stderr)
    t.comment(`${format}: ${TENANTS} tenants exported in ${ms} ms (${(statSync(file).size / 1e6).toFixed(1)} MB)` +
      (peak === null ? '' : `, peak RSS ${(Number(peak[1]) / 1024).toFixed(1)} MB`))
  }
})
