// Concurrency leases in the field, over real sockets: unknown URLs, clients that leave before the
// decision or while the handler runs, handlers that never answer. A concurrency limit bounds the
// handlers running at once, and no lease outlives its request.
import { request as httpRequest, type ClientRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'
import t from 'tap'
import { buildApp, headerTenant, listen } from './helpers/app.js'
import { privateRedis } from './helpers/redis.js'
import { STORE_KINDS } from './helpers/stores.js'
import { within } from './helpers/wait.js'
import { get } from './helpers/http-get.js'

const LIMITS = { requestsPerMinute: 1000, requestsPerHour: null, concurrentRequests: 5, monthlyQuota: null }
/** Anonymous clients with room in their windows, so only concurrency can refuse them. */
const ROOMY_ANONYMOUS = { anonymous: LIMITS }
const tenant = { 'x-tenant': 'acme', 'x-tier': 'narrow' }

/** A GET whose client hangs up after `ms`. */
function abortedGet (port: number, path: string, headers: Record<string, string>, ms: number): ClientRequest {
  const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false })
  req.on('error', () => {})
  req.end()
  setTimeout(() => req.destroy(), ms)
  return req
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    t.test('requests to unknown URLs give their lease back', async t => {
      const app = await buildApp(t, { kind, options: { tiers: ROOMY_ANONYMOUS } })
      const port = await listen(app)
      for (const path of ['/.env', '/wp-login.php', '/admin', '/.git/config', '/phpinfo.php', '/x', '/y', '/z', '/a/b', '/c']) {
        t.equal((await get(port, path)).status, 404)
      }
      const next = await get(port, '/')
      t.equal(next.status, 200, 'ten 404s later, the client is still admitted')
      t.equal(next.headers['x-ratelimit-concurrent-remaining'], '4', 'only itself in flight')
      t.equal((await app.inject({ url: '/nowhere' })).statusCode, 404)
      t.equal((await app.inject({ url: '/' })).headers['x-ratelimit-concurrent-remaining'], '4', 'also through inject')
    })

    t.test('unknown URLs of an organization\'s tenant give the organization\'s lease back too', async t => {
      const app = await buildApp(t, {
        kind,
        options: { tiers: { narrow: LIMITS }, tenantExtractor: () => ({ tenantId: 'acme', tier: 'narrow', organizationId: 'hooli', organizationTier: 'narrow' }) }
      })
      const port = await listen(app)
      for (const path of ['/.env', '/wp-login.php', '/admin', '/.git/config', '/x', '/y']) t.equal((await get(port, path)).status, 404)
      t.equal((await get(port, '/')).status, 200, 'six 404s later, still admitted at both levels')
      const settled = await within(2000, async () => {
        const tenantUsage = await app.policies.usage('acme', { organizationId: 'hooli' })
        const organization = await app.policies.usage('hooli', { scope: 'organization' })
        return tenantUsage.concurrent.inFlight === 0 && organization.concurrent.inFlight === 0 && organization.minute.used === 7 && tenantUsage.minute.used === 7
      })
      t.ok(settled < Infinity, 'no lease left at the tenant nor at the organization, every request counted at both')
    })

    t.test('a client that leaves before the decision: its handler never runs and its lease goes back at once', async t => {
      let handled = 0
      const app = await buildApp(t, {
        kind,
        options: {
          tiers: { narrow: LIMITS },
          leaseTtlSeconds: 30,
          // Slow identification, as a token lookup would be.
          tenantExtractor: async (request) => { await sleep(300); return { tenantId: String(request.headers['x-tenant']), tier: 'narrow' } }
        }
      }, app => { app.get('/', async () => { handled++; return 'ok' }) })
      const port = await listen(app)
      const gone = Array.from({ length: 5 }, () => abortedGet(port, '/', tenant, 50))
      await sleep(450)
      t.ok(gone.every(req => req.destroyed))
      t.equal(handled, 0, 'no handler ran for a client that had gone')
      const next = await get(port, '/', tenant)
      t.equal(next.status, 200, 'not refused for the five that left')
      t.equal(next.headers['x-ratelimit-concurrent-remaining'], '4', 'only itself in flight')
      t.equal(handled, 1)
    })

    t.test('clients that leave while their handler runs cannot run more handlers than the limit', async t => {
      let running = 0
      let most = 0
      let finished = 0
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: { narrow: LIMITS } } }, app => {
        app.get('/work', async () => {
          running++
          most = Math.max(most, running)
          await sleep(600)
          running--
          finished++
          return 'done'
        })
      })
      const port = await listen(app)
      // Twenty requests, one every 30 ms, each abandoned 100 ms after it was sent.
      for (let i = 0; i < 20; i++) {
        abortedGet(port, '/work', tenant, 100)
        await sleep(30)
      }
      t.ok(most <= 5, `at most 5 handlers ran at once (${most})`)
      t.ok(await within(2000, async () => running === 0 && finished > 0) < Infinity, 'the admitted handlers finished')
      const freed = await within(1000, async () => (await get(port, '/work', tenant)).headers['x-ratelimit-concurrent-remaining'] === '4')
      t.ok(freed < Infinity, 'their slots came back when their handlers answered')
    })

    t.test('a handler that never answers its departed client frees the slot one lease lifetime later', async t => {
      const app = await buildApp(t, {
        kind,
        options: { tenantExtractor: headerTenant, leaseTtlSeconds: 0.3, tiers: { narrow: { ...LIMITS, concurrentRequests: 1 } } }
      }, app => {
        app.get('/forever', async () => await new Promise(() => {}))
        app.get('/ok', async () => 'ok')
      })
      const port = await listen(app)
      const req = abortedGet(port, '/forever', tenant, 700)
      await sleep(500)
      t.equal((await get(port, '/ok', tenant)).status, 429, 'held (and renewed) while its client waits')
      await sleep(300)
      t.ok(req.destroyed)
      t.equal((await get(port, '/ok', tenant)).status, 429, 'still held just after the client left: the handler runs on')
      const freed = await within(1500, async () => (await get(port, '/ok', tenant)).status === 200)
      t.ok(freed < Infinity, `freed ${freed} ms after the client left (lease lifetime 300 ms)`)
    })

    t.test('a reply the handler takes over (hijack) gives its lease back when it ends, or one lifetime after its client left', async t => {
      let held!: (value: unknown) => void
      const app = await buildApp(t, {
        kind,
        options: { tenantExtractor: headerTenant, leaseTtlSeconds: 0.3, tiers: { narrow: { ...LIMITS, concurrentRequests: 1 } } }
      }, app => {
        // Written by the handler itself, as a proxy or a file server might.
        app.get('/raw', (_request, reply) => {
          reply.hijack()
          reply.raw.end('raw')
        })
        // Kept open by the handler until the client goes, as a WebSocket would be.
        app.get('/socket', (request, reply) => {
          reply.hijack()
          reply.raw.writeHead(200)
          reply.raw.write('open')
          request.raw.socket.once('close', () => held(null))
        })
        app.get('/ok', async () => 'ok')
      })
      const port = await listen(app)
      t.equal((await get(port, '/raw', tenant)).status, 200)
      const freed = await within(1500, async () => (await get(port, '/ok', tenant)).status === 200)
      t.ok(freed < Infinity, `the ended hijacked reply's slot came back (${freed} ms): its response ended, so onResponse ran`)

      const closed = new Promise(resolve => { held = resolve })
      const socket = abortedGet(port, '/socket', tenant, 600)
      await sleep(300)
      t.equal((await get(port, '/ok', tenant)).status, 429, 'held, and renewed, while the hijacked connection is open')
      await closed
      t.ok(socket.destroyed)
      const again = await within(1500, async () => (await get(port, '/ok', tenant)).status === 200)
      t.ok(again < Infinity, `its slot came back after the connection closed (${again} ms, lease lifetime 300 ms): no longer renewed once its client left`)
    })
  })
}

t.test('a client that leaves while Redis is slow to decide: its lease goes back at once', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  let handled = 0
  const app = await buildApp(t, {
    kind: 'memory',
    options: { redis, tenantExtractor: headerTenant, tiers: { narrow: LIMITS }, leaseTtlSeconds: 30, storeTimeoutMs: 100 }
  }, app => { app.get('/', async () => { handled++; return 'ok' }) })
  const port = await listen(app)
  t.equal((await get(port, '/', tenant)).status, 200, 'warm: the script is loaded')
  handled = 0
  server.pause()
  for (let i = 0; i < 5; i++) abortedGet(port, '/', tenant, 30)
  await sleep(70)
  server.resume()
  await sleep(100)
  t.equal(handled, 0, 'no handler ran for a client that had gone')
  const next = await get(port, '/', tenant)
  t.equal(next.status, 200)
  t.equal(next.headers['x-ratelimit-concurrent-remaining'], '4', 'the five leases granted after their clients left went back')
  t.equal(next.headers['x-ratelimit-status'], undefined, 'decided by Redis, not degraded')
})
