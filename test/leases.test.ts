// Concurrency leases through Fastify: given back on success, on error and on client abort, exactly
// once; a lease that is never given back expires by itself.
import { request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { buildApp, headerTenant } from './helpers/app.js'
import { STORE_KINDS } from './helpers/stores.js'

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

    t.test('given back when the client aborts', async t => {
      let reached!: () => void
      const inHandler = new Promise<void>(resolve => { reached = resolve })
      const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: TIERS } }, app => {
        app.get('/hang', async () => { reached(); await sleep(3000); return 'late' })
        app.get('/ok', async () => 'ok')
      })
      await app.listen({ port: 0, host: '127.0.0.1' })
      const address = app.server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      const req = httpRequest({ host: '127.0.0.1', port, path: '/hang', headers: tenant })
      req.on('error', () => {})
      req.end()
      await inHandler
      t.equal((await app.inject({ url: '/ok', headers: tenant })).headers['x-ratelimit-concurrent-remaining'], '0', 'the hanging request holds a slot')
      req.destroy()
      await sleep(100)
      t.equal((await app.inject({ url: '/ok', headers: tenant })).headers['x-ratelimit-concurrent-remaining'], '1', 'abort gave the slot back')
    })

    t.test('a lease never given back expires after leaseTtlSeconds', async t => {
      let open!: () => void
      const gate = new Promise<void>(resolve => { open = resolve })
      const app = await buildApp(t, {
        kind,
        options: { tenantExtractor: headerTenant, leaseTtlSeconds: 0.3, tiers: { one: { ...TIERS.narrow, concurrentRequests: 1 } } }
      }, app => {
        app.get('/stuck', async () => { await gate; return 'late' })
        app.get('/ok', async () => 'ok')
      })
      const headers = { 'x-tenant': 'acme', 'x-tier': 'one' }
      const stuck = app.inject({ url: '/stuck', headers })
      await sleep(50)
      t.equal((await app.inject({ url: '/ok', headers })).statusCode, 429, 'the stuck request holds the only slot')
      await sleep(350)
      t.equal((await app.inject({ url: '/ok', headers })).statusCode, 200, 'its lease expired and the slot was reclaimed')
      open()
      await stuck
    })
  })
}
