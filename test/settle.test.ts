// Costs known only after the response: request.rateLimit.settle() and config.rateLimit.refundWhen,
// counted when the request is over, in the buckets that held the reservation.
import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { Redis } from 'ioredis'
import { InvalidSettleError } from '../dist/index.js'
import { buildApp, headerTenant, listen } from './helpers/app.js'
import { privateRedis } from './helpers/redis.js'
import { STORE_KINDS } from './helpers/stores.js'
import { within } from './helpers/wait.js'

const TIERS = { ten: { requestsPerMinute: 10, requestsPerHour: 1000, concurrentRequests: 5, monthlyQuota: 10_000 } }

/** A refundWhen that gives the reservation back when the client left; `asked` records each call. */
function refundIfAborted (asked: string[]): (request: FastifyRequest) => boolean {
  return (request) => {
    asked.push(request.raw.aborted ? 'aborted' : 'answered')
    return request.raw.aborted
  }
}

/** Minute capacity left for a tenant, as the limiter API sees it. */
async function left (app: FastifyInstance, tenantId: string, bucket?: string): Promise<number> {
  return (await app.rateLimiter.peek({ tenantId, tier: 'ten' }, { cost: 0, bucket })).minute.remaining
}

/** Waits until the tenant's minute capacity is `expected` (a settlement is counted just after the response). */
async function settlesTo (app: FastifyInstance, tenantId: string, expected: number, bucket?: string): Promise<number> {
  await within(2000, async () => await left(app, tenantId, bucket) === expected)
  return await left(app, tenantId, bucket)
}

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => {
    const errors: string[] = []
    const app = await buildApp(t, { kind, options: { tenantExtractor: headerTenant, tiers: TIERS } }, app => {
      app.get('/tokens/:n', async (request) => {
        request.rateLimit?.settle(Number((request.params as { n: string }).n))
        return 'ok'
      })
      app.get('/bulk/:n', { config: { rateLimit: { cost: 5, bucket: 'bulk' } } }, async (request) => {
        request.rateLimit?.settle(Number((request.params as { n: string }).n))
        return 'ok'
      })
      app.get('/twice', async (request) => {
        request.rateLimit?.settle(2)
        try {
          request.rateLimit?.settle(3)
        } catch (err) {
          errors.push(String((err as Error).message))
          if (!(err instanceof InvalidSettleError)) throw err
        }
        try {
          request.rateLimit?.settle(1.5)
        } catch (err) {
          errors.push(String((err as Error).message))
        }
        return 'ok'
      })
      app.get('/fragile', { config: { rateLimit: { refundWhen: (_request, reply) => reply.statusCode >= 500 } } }, async (request) => {
        if ((request.query as { fail?: string }).fail !== undefined) throw new Error('downstream failed')
        return 'ok'
      })
      app.post('/login', { config: { rateLimit: { bucket: 'login', refundWhen: (_request, reply) => reply.statusCode < 400 } } }, async (request, reply) => {
        return await reply.code((request.body as { ok?: boolean }).ok === true ? 200 : 401).send('')
      })
    })
    const as = (tenant: string): Record<string, string> => ({ 'x-tenant': tenant, 'x-tier': 'ten' })

    t.test('a settle up charges the difference after the response', async t => {
      const res = await app.inject({ url: '/tokens/4', headers: as('up') })
      t.equal(res.headers['x-ratelimit-remaining-minute'], '9', 'the response shows the reservation of 1')
      t.equal(await settlesTo(app, 'up', 6), 6, 'then the 3 more are counted')
      t.equal((await app.policies.usage('up', { tier: 'ten' })).month.used, 4, 'in the month too')
    })

    t.test('a settle down gives back the difference, in the reservation\'s bucket', async t => {
      await app.inject({ url: '/bulk/2', headers: as('down') })
      t.equal(await settlesTo(app, 'down', 8, 'bulk'), 8, '5 reserved, 2 counted')
      t.equal((await app.policies.usage('down', { tier: 'ten' })).month.used, 2)
      await app.inject({ url: '/bulk/0', headers: as('down') })
      t.equal(await settlesTo(app, 'down', 8, 'bulk'), 8, 'a settle to 0 gives the whole reservation back')
    })

    t.test('a charge past the limit is a debt, refused until it has left the window', async t => {
      await app.inject({ url: '/tokens/14', headers: as('debtor') })
      await settlesTo(app, 'debtor', 0)
      t.equal((await app.policies.usage('debtor', { tier: 'ten' })).minute.used, 14, 'counted whole')
      const refused = await app.inject({ url: '/tokens/1', headers: as('debtor') })
      t.equal(refused.statusCode, 429)
      const retryAfter = Number(refused.headers['retry-after'])
      t.ok(retryAfter >= 57 && retryAfter <= 63, `Retry-After: when the debt has left the minute (${retryAfter} s)`)
    })

    t.test('settle twice, or with a cost that is not a whole number: an error', async t => {
      t.equal((await app.inject({ url: '/twice', headers: as('careful') })).statusCode, 200)
      t.match(errors[0], /already called/)
      t.match(errors[1], /already called/, 'the first settle stands')
      t.equal(await settlesTo(app, 'careful', 8), 8, 'counted at the first settle: 2')
    })

    t.test('refundWhen gives the reservation back when the response failed', async t => {
      t.equal((await app.inject({ url: '/fragile?fail', headers: as('unlucky') })).statusCode, 500)
      await sleep(20)
      t.equal(await settlesTo(app, 'unlucky', 10), 10, 'the 500 did not count')
      t.equal((await app.inject({ url: '/fragile', headers: as('unlucky') })).statusCode, 200)
      t.equal(await settlesTo(app, 'unlucky', 9), 9, 'the 200 did')
    })

    t.test('refundWhen counts only failed logins', async t => {
      for (const ok of [true, false, true, false, false]) await app.inject({ method: 'POST', url: '/login', headers: as('user'), payload: { ok } })
      t.equal(await settlesTo(app, 'user', 7, 'login'), 7, 'three failures counted, two successes given back')
    })
  })
}

t.test('refundWhen and settle when the client leaves before the answer (real socket)', async t => {
  const asked: string[] = []
  let started = 0
  const app = await buildApp(t, { kind: 'redis', options: { tenantExtractor: headerTenant, tiers: TIERS } }, app => {
    app.get('/slow', {
      config: {
        rateLimit: {
          cost: 3,
          refundWhen: refundIfAborted(asked)
        }
      }
    }, async () => { started++; await sleep(300); return 'late' })
    app.get('/stream', async (request) => { started++; await sleep(300); request.rateLimit?.settle(6); return 'done' })
  })
  const port = await listen(app)
  const headers = { 'x-tenant': 'leaver', 'x-tier': 'ten' }
  // The client leaves once its handler runs (not after a fixed time, which a busy machine may not reach).
  const leaveWhenStarted = async (path: string, headers: Record<string, string>): Promise<void> => {
    const before = started
    const abort = new AbortController()
    const request = fetch(`http://127.0.0.1:${port}${path}`, { headers, signal: abort.signal }).catch(() => {})
    await within(5000, async () => started > before)
    abort.abort()
    await request
  }
  await leaveWhenStarted('/slow', headers)
  t.equal(await settlesTo(app, 'leaver', 10), 10, 'the aborted request\'s reservation of 3 went back')
  await sleep(400)
  t.same(asked, ['aborted'], 'refundWhen asked once, at the abort')
  t.equal(await left(app, 'leaver'), 10, 'and the handler\'s late answer changed nothing')

  await leaveWhenStarted('/stream', { 'x-tenant': 'streamer', 'x-tier': 'ten' })
  await sleep(400)
  t.equal(await settlesTo(app, 'streamer', 4), 4, 'a handler that settles after its client left is still counted (6)')
})

t.test('a client that leaves before the decision: refundWhen still gives the reservation back', async t => {
  const app = await buildApp(t, {
    kind: 'redis',
    options: {
      tiers: TIERS,
      // The decision comes after the client has gone.
      tenantExtractor: async (request) => { await sleep(150); return { tenantId: String(request.headers['x-tenant']), tier: 'ten' } }
    }
  }, app => {
    app.get('/early', { config: { rateLimit: { cost: 4, refundWhen: (request) => request.raw.aborted } } }, async () => 'never')
  })
  const port = await listen(app)
  await fetch(`http://127.0.0.1:${port}/early`, { headers: { 'x-tenant': 'hasty' }, signal: AbortSignal.timeout(50) }).catch(() => {})
  await sleep(300)
  t.equal(await settlesTo(app, 'hasty', 10), 10, 'admitted after the client left, then refunded')
})

t.test('a client that leaves while its admission is decided: refundWhen is asked, and its true gives the reservation back', async t => {
  const asked: string[] = []
  let handled = 0
  let costed = false
  const app = await buildApp(t, { kind: 'redis', options: { tenantExtractor: headerTenant, tiers: TIERS } }, app => {
    app.get('/slow-cost', {
      config: {
        rateLimit: {
          // A slow cost (a body read, say): the client leaves before the store is even asked.
          cost: async () => { await sleep(200); costed = true; return 3 },
          refundWhen: refundIfAborted(asked)
        }
      }
    }, async () => { handled++; return 'never read' })
  })
  const port = await listen(app)
  await fetch(`http://127.0.0.1:${port}/slow-cost`, { headers: { 'x-tenant': 'early-leaver', 'x-tier': 'ten' }, signal: AbortSignal.timeout(50) }).catch(() => {})
  t.ok(await within(2000, async () => costed), 'the cost was known after the client left')
  t.ok(await within(2000, async () => asked.length > 0) < Infinity, 'refundWhen was asked')
  t.same(asked, ['aborted'])
  t.equal(await settlesTo(app, 'early-leaver', 10), 10, 'the reservation of 3 went back')
  t.equal(handled, 0, 'the handler never ran')
})

t.test('a client that leaves while Redis is slow to decide: refundWhen is asked once the reservation is counted', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url)
  t.teardown(() => redis.disconnect())
  const asked: string[] = []
  const app = await buildApp(t, { kind: 'memory', options: { redis, tenantExtractor: headerTenant, tiers: TIERS, storeTimeoutMs: 1000 } }, app => {
    app.get('/fragile', {
      config: {
        rateLimit: {
          cost: 3,
          refundWhen: refundIfAborted(asked)
        }
      }
    }, async () => 'never read')
  })
  const port = await listen(app)
  t.equal(await left(app, 'slow-store'), 10, 'warm: the scripts are loaded')
  server.pause()
  await fetch(`http://127.0.0.1:${port}/fragile`, { headers: { 'x-tenant': 'slow-store', 'x-tier': 'ten' }, signal: AbortSignal.timeout(50) }).catch(() => {})
  await sleep(100)
  server.resume()
  t.equal(await settlesTo(app, 'slow-store', 10), 10, 'the reservation of 3, counted after the client left, went back')
  t.same(asked, ['aborted'], 'refundWhen asked once')
})
