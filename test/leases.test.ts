// Concurrency leases through Fastify: given back on success, on error and (once the handler has
// answered) on client abort, exactly once; a lease that is never given back expires by itself.
import { spawn } from 'node:child_process'
import { request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildApp, headerTenant, listen } from './helpers/app.js'
import { STORE_KINDS } from './helpers/stores.js'
import { REDIS_URL, sharedRedis, uniquePrefix } from './helpers/redis.js'
import { within } from './helpers/wait.js'

const TIERS = { narrow: { requestsPerMinute: 1000, requestsPerHour: null, concurrentRequests: 2, monthlyQuota: null } }
const tenant = { 'x-tenant': 'acme', 'x-tier': 'narrow' }

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    t.test('given back after success and after a handler error', async t => {
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: TIERS } }, app => {
        app.get('/ok', async () => 'ok')
        app.get('/boom', async () => { throw new Error('handler failed') })
      })
      for (let i = 0; i < 5; i++) {
        t.equal((await app.inject({ url: '/ok', headers: tenant })).headers['x-ratelimit-concurrent-remaining'], '1', 'only itself in flight')
        t.equal((await app.inject({ url: '/boom', headers: tenant })).statusCode, 500)
      }
      t.equal((await app.inject({ url: '/ok', headers: tenant })).headers['x-ratelimit-concurrent-remaining'], '1', 'errors leaked nothing')
    })

    t.test('in-flight requests hold their slot; a third is refused', async t => {
      let open!: () => void
      const gate = new Promise<void>(resolve => { open = resolve })
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: TIERS } }, app => {
        app.get('/wait', async () => { await gate; return 'done' })
        app.get('/ok', async () => 'ok')
      })
      const slow = [app.inject({ url: '/wait', headers: tenant }), app.inject({ url: '/wait', headers: tenant })]
      await sleep(50)
      const third = await app.inject({ url: '/ok', headers: tenant })
      t.equal(third.statusCode, 429)
      t.equal(third.headers['x-ratelimit-error'], 'concurrent_limit_exceeded')
      t.equal(third.headers['retry-after'], '1')
      open()
      await Promise.all(slow)
      t.equal((await app.inject({ url: '/ok', headers: tenant })).statusCode, 200, 'slots free once responses are sent')
    })

    t.test('a client that aborts leaves its slot taken until its handler answers', async t => {
      let reached!: () => void
      const inHandler = new Promise<void>(resolve => { reached = resolve })
      let finish!: () => void
      const finished = new Promise<void>(resolve => { finish = resolve })
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: TIERS } }, app => {
        app.get('/hang', async () => { reached(); await sleep(300); finish(); return 'late' })
        app.get('/ok', async () => 'ok')
      })
      const port = await listen(app)
      const req = httpRequest({ host: '127.0.0.1', port, path: '/hang', headers: tenant })
      req.on('error', () => {})
      req.end()
      await inHandler
      t.equal((await app.inject({ url: '/ok', headers: tenant })).headers['x-ratelimit-concurrent-remaining'], '0', 'the hanging request holds a slot')
      req.destroy()
      await sleep(100)
      t.equal((await app.inject({ url: '/ok', headers: tenant })).headers['x-ratelimit-concurrent-remaining'], '0', 'its handler still runs: the slot is still taken')
      await finished
      await sleep(50)
      t.equal((await app.inject({ url: '/ok', headers: tenant })).headers['x-ratelimit-concurrent-remaining'], '1', 'given back once the handler answered')
    })

    t.test('a running request keeps its lease past leaseTtlSeconds (renewed), and frees it when done', async t => {
      let open!: () => void
      const gate = new Promise<void>(resolve => { open = resolve })
      const app = await buildApp(t, {
        kind,
        options: { tenantExtractor: headerTenant, leaseTtlSeconds: 0.3, tiers: { one: { ...TIERS.narrow, concurrentRequests: 1 } } }
      }, app => {
        app.get('/stream', async () => { await gate; return 'done' })
        app.get('/ok', async () => 'ok')
      })
      const headers = { 'x-tenant': 'acme', 'x-tier': 'one' }
      const stream = app.inject({ url: '/stream', headers })
      await sleep(50)
      t.equal((await app.inject({ url: '/ok', headers })).statusCode, 429, 'the running request holds the only slot')
      await sleep(700)
      t.equal((await app.inject({ url: '/ok', headers })).statusCode, 429, 'still held after twice the lease lifetime: it was renewed')
      open()
      await stream
      t.equal((await app.inject({ url: '/ok', headers })).statusCode, 200, 'given back when the request ends')
    })
  })
}

t.test('a process killed while holding a lease loses its slot one lifetime later', async t => {
  const redis = sharedRedis(t)
  const keyPrefix = uniquePrefix(t, redis)
  const child = spawn(process.execPath, [new URL('./fixtures/crash-app.mjs', import.meta.url).pathname, REDIS_URL, keyPrefix], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.teardown(() => { child.kill('SIGKILL') })
  await new Promise<void>(resolve => child.stdout.on('data', (chunk: Buffer) => { if (chunk.toString().includes('holding')) resolve() }))
  await sleep(100)
  child.kill('SIGKILL')
  const app = await buildApp(t, {
    kind: 'redis',
    keyPrefix,
    options: { tenantExtractor: () => ({ tenantId: 'acme', tier: 'one' }), tiers: { one: { ...TIERS.narrow, concurrentRequests: 1 } } }
  })
  t.equal((await app.inject({ url: '/' })).statusCode, 429, 'the dead process still holds the slot')
  const start = Date.now()
  while ((await app.inject({ url: '/' })).statusCode === 429 && Date.now() - start < 3000) await sleep(50)
  const freedAfter = Date.now() - start
  t.ok(freedAfter < 1000, `reclaimed ${freedAfter} ms later (lease lifetime 0.6 s)`)
  // Our own lease is given back just after the response (within a few ms; more on a busy machine).
  const leftAfter = await within(2000, async () => await redis.hlen(`${keyPrefix}:v1:{t:acme}:all:c`) === 0)
  t.ok(leftAfter < Infinity, 'no lease left behind')
})
