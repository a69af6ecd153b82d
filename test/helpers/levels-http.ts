// Organizations and shared route budgets through real Fastify instances and real sockets: the same
// tests on every store (memory: one instance; Redis and the Cluster: two instances on one prefix).
import { request as httpRequest } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import type { FastifyInstance } from 'fastify'
import type { Test } from 'tap'
import type { RateLimitingOptions } from '../../dist/index.js'
import { storeKeys } from '../../dist/keys.js'
import { listen } from './app.js'
import { within } from './wait.js'
import { get } from './http-get.js'

/** Builds one instance with these options and routes; instances of one call share a key prefix. */
export type MakeInstances = (t: Test, count: number, options: RateLimitingOptions, routes: (app: FastifyInstance) => void) => Promise<{ apps: FastifyInstance[], prefix: string }>

const TIERS = {
  roomy: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: 10, monthlyQuota: null },
  team: { requestsPerMinute: 30, requestsPerHour: null, concurrentRequests: 20, monthlyQuota: null },
  ten: { requestsPerMinute: 10, requestsPerHour: null, concurrentRequests: 20, monthlyQuota: null },
  'org-small': { requestsPerMinute: 3, requestsPerHour: null, concurrentRequests: 2, monthlyQuota: null },
  'org-fifty': { requestsPerMinute: 50, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null },
  'org-wide': { requestsPerMinute: 1000, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null }
}

/** x-tenant / x-tier / x-org / x-org-tier headers, as a token lookup would report them. */
const extractor: RateLimitingOptions['tenantExtractor'] = request => {
  const h = (name: string): string | undefined => typeof request.headers[name] === 'string' ? request.headers[name] : undefined
  const tenantId = h('x-tenant')
  if (tenantId === undefined) return null
  return { tenantId, tier: h('x-tier'), organizationId: h('x-org'), organizationTier: h('x-org-tier') }
}

/** A handler held until the test opens its gate (at most 5 s, so a test that goes wrong ends). */
async function held (gates: Array<() => void>): Promise<void> {
  await Promise.race([new Promise<void>(resolve => gates.push(resolve)), sleep(5000)])
}

const member = (tenant: string, org: string, orgTier: string, tier = 'roomy'): Record<string, string> =>
  ({ 'x-tenant': tenant, 'x-tier': tier, 'x-org': org, 'x-org-tier': orgTier })

/**
 * `exact`: every level's capacity is used to the unit (one atomic decision per request). Not so on a
 * Redis Cluster, where a shared budget's reservation given back a moment later may refuse another
 * request meanwhile: there the levels must hold, and may under-admit.
 */
export function levelsHttpSuite (t: Test, make: MakeInstances, instances: number, exact = true): void {
  const options: RateLimitingOptions = { tenantExtractor: extractor, tiers: TIERS, ietfHeaders: 'draft-11' }

  t.test('two tenants of one organization share its minute limit; the 429 names the organization', async t => {
    const { apps } = await make(t, instances, options, app => { app.get('/', async () => 'ok') })
    const codes: number[] = []
    for (const [i, tenant] of ['team-a', 'team-a', 'team-b'].entries()) {
      codes.push((await apps[i % apps.length].inject({ url: '/', headers: member(tenant, 'acme', 'org-small') })).statusCode)
    }
    t.same(codes, [200, 200, 200])
    const refused = await apps[apps.length - 1].inject({ url: '/', headers: member('team-b', 'acme', 'org-small') })
    t.equal(refused.statusCode, 429)
    t.equal(refused.headers['x-ratelimit-scope'], 'organization')
    t.equal(refused.headers['x-ratelimit-error'], 'rate_limit_exceeded')
    t.equal(refused.headers['x-ratelimit-remaining-minute'], '0', 'the headers report the tightest level')
    t.match(String(refused.headers['ratelimit-policy']), /"minute";q=100;w=60, "organization-minute";q=3;w=60/, 'each level is a policy of its own')
    t.match(JSON.parse(refused.body), { reason: 'rate_limit_exceeded' })
    const other = await apps[0].inject({ url: '/', headers: member('team-c', 'globex', 'org-small') })
    t.equal(other.statusCode, 200, 'another organization is not held by it')
    const tenantRefusal = await apps[0].inject({ url: '/', headers: { 'x-tenant': 'solo', 'x-tier': 'org-small' } })
    t.equal(tenantRefusal.headers['x-ratelimit-scope'], undefined, 'admitted requests carry no scope')
  })

  t.test('tenants of one organization share its concurrency, over real sockets', async t => {
    const gates: Array<() => void> = []
    const { apps, prefix } = await make(t, instances, options, app => {
      app.get('/slow', async () => { await held(gates); return 'done' })
    })
    const ports = await Promise.all(apps.map(listen))
    const a = get(ports[0], '/slow', member('team-a', 'acme', 'org-small'))
    const b = get(ports[ports.length - 1], '/slow', member('team-b', 'acme', 'org-small'))
    t.ok(await within(2000, async () => gates.length === 2) < Infinity, 'two handlers running')
    const third = await get(ports[0], '/slow', member('team-c', 'acme', 'org-small'))
    t.equal(third.status, 429)
    t.same([third.headers['x-ratelimit-scope'], third.headers['x-ratelimit-error']], ['organization', 'concurrent_limit_exceeded'])
    for (const open of gates) open()
    t.same([(await a).status, (await b).status], [200, 200])
    const org = storeKeys(prefix, 'organization', 'acme', undefined)
    t.ok(await within(2000, async () => (await apps[0].rateLimitStore.usage(org)).inFlight === 0) < Infinity, "the organization's leases all went back")
  })

  t.test('a shared concurrency budget across three tenants and every instance: back to zero after each response, abort and error', async t => {
    const gates: Array<() => void> = []
    let failNext = false
    const { apps, prefix } = await make(t, instances, options, app => {
      app.get('/render', { config: { rateLimit: { shared: { name: 'renderer', concurrentRequests: 2 } } } }, async () => {
        await held(gates)
        if (failNext) throw new Error('renderer crashed')
        return 'pdf'
      })
    })
    const ports = await Promise.all(apps.map(listen))
    const route = storeKeys(prefix, 'route', 'renderer', undefined)
    const inFlight = async (): Promise<number> => (await apps[0].rateLimitStore.usage(route)).inFlight
    const tenants = ['t1', 't2', 't3'].map(id => ({ 'x-tenant': id, 'x-tier': 'roomy' }))

    // Responses: two run, the third tenant is refused by the route.
    const first = get(ports[0], '/render', tenants[0])
    const second = get(ports[ports.length - 1], '/render', tenants[1])
    t.ok(await within(2000, async () => gates.length === 2) < Infinity)
    const refused = await get(ports[0], '/render', tenants[2])
    t.same([refused.status, refused.headers['x-ratelimit-scope']], [429, 'route'])
    t.equal(await inFlight(), 2)
    gates.splice(0).forEach(open => open())
    t.same([(await first).status, (await second).status], [200, 200])
    t.ok(await within(2000, async () => await inFlight() === 0) < Infinity, 'zero after the responses')

    // An abort: the client leaves while the handler runs; the slot goes back when the handler ends.
    const req = httpRequest({ host: '127.0.0.1', port: ports[ports.length - 1], path: '/render', headers: tenants[2], agent: false })
    req.on('error', () => {})
    req.end()
    t.ok(await within(2000, async () => gates.length === 1) < Infinity)
    req.destroy()
    await sleep(50)
    gates.splice(0).forEach(open => open())
    t.ok(await within(2000, async () => await inFlight() === 0) < Infinity, 'zero after an abort')

    // An error: the handler throws; its 500 still gives the slot back.
    failNext = true
    const failing = get(ports[0], '/render', tenants[1])
    t.ok(await within(2000, async () => gates.length === 1) < Infinity)
    gates.splice(0).forEach(open => open())
    t.equal((await failing).status, 500)
    t.ok(await within(2000, async () => await inFlight() === 0) < Infinity, 'zero after an error')
  })

  t.test('a settled cost and a refund change every level; fastify.rateLimiter counts at the organization too', async t => {
    const { apps, prefix } = await make(t, instances, options, app => {
      app.get('/job', { config: { rateLimit: { cost: () => 2, shared: { name: 'jobs', requestsPerMinute: 1000 } } } }, async request => {
        request.rateLimit?.settle(5)
        return 'done'
      })
      app.get('/flaky', { config: { rateLimit: { refundWhen: (_request, reply) => reply.statusCode >= 500 } } }, async (_request, reply) => await reply.code(503).send('down'))
    })
    const headers = member('team-a', 'acme', 'org-wide')
    t.equal((await apps[0].inject({ url: '/job', headers })).statusCode, 200)
    const minute = async (keys: ReturnType<typeof storeKeys>): Promise<number> => (await apps[0].rateLimitStore.usage(keys)).minute
    const tenant = storeKeys(prefix, 'tenant', 'team-a', undefined, 'acme')
    const org = storeKeys(prefix, 'organization', 'acme', undefined)
    const route = storeKeys(prefix, 'route', 'jobs', undefined)
    t.ok(await within(2000, async () => await minute(tenant) === 5 && await minute(org) === 5 && await minute(route) === 5) < Infinity,
      'the settled cost (5, reserved 2) counts at the tenant, its organization and the shared budget')
    t.equal((await apps[apps.length - 1].inject({ url: '/flaky', headers })).statusCode, 503)
    await sleep(50)
    t.same([await minute(tenant), await minute(org)], [5, 5], 'a refunded request counts nowhere')

    const consumed = await apps[0].rateLimiter.consume({ tenantId: 'team-a', tier: 'roomy', organizationId: 'acme', organizationTier: 'org-wide' }, { cost: 3 })
    t.equal(consumed.allowed, true)
    t.same([await minute(tenant), await minute(org)], [8, 8], 'the limiter API counts where HTTP requests do')
    const refunded = await apps[0].rateLimiter.refund({ tenantId: 'team-a', tier: 'roomy', organizationId: 'acme', organizationTier: 'org-wide' }, { cost: 3 })
    t.equal(refunded.minute, 3)
    t.same([await minute(tenant), await minute(org)], [5, 5], 'and refunds there')
    const small = await apps[0].rateLimiter.consume({ tenantId: 'team-z', organizationId: 'tiny', organizationTier: 'org-small' }, { cost: 4 })
    t.same([small.allowed, small.scope], [false, 'organization'], 'the organization refuses an API call too')
  })

  t.test('routes naming one shared budget must give it the same limits', async t => {
    await t.rejects(make(t, 1, options, app => {
      app.get('/a', { config: { rateLimit: { shared: { name: 'pdf', concurrentRequests: 2 } } } }, async () => 'a')
      app.get('/b', { config: { rateLimit: { shared: { name: 'pdf', concurrentRequests: 3 } } } }, async () => 'b')
    }), /GET \/b.*budget "pdf" has other limits on GET \/a/)
    await t.rejects(make(t, 1, options, app => {
      app.get('/c', { config: { rateLimit: { shared: { name: 'pdf' } } } }, async () => 'c')
    }), /rateLimit\.shared must set at least one/)
  })

  t.test('300 parallel requests over every instance never exceed any level', async t => {
    const { apps, prefix } = await make(t, instances, options, app => {
      app.get('/x', { config: { rateLimit: { shared: { name: 'downstream', requestsPerMinute: 90 } } } }, async () => 'ok')
    })
    const ports = await Promise.all(apps.map(listen))
    // Every level refuses some: globex's two tenants are held to 10 each by their own tier, acme's
    // three to 50 together by their organization, and the route to 90 in all, which initech's one
    // roomy tenant reaches last.
    const who = [
      member('a1', 'acme', 'org-fifty', 'team'), member('a2', 'acme', 'org-fifty', 'team'), member('a3', 'acme', 'org-fifty', 'team'),
      member('g1', 'globex', 'org-wide', 'ten'), member('g2', 'globex', 'org-wide', 'ten'), member('i1', 'initech', 'org-wide', 'roomy')
    ]
    const answers = await Promise.all(Array.from({ length: 300 }, async (_, i) => {
      const headers = who[i % who.length]
      return { tenant: headers['x-tenant'], org: headers['x-org'], answer: await get(ports[i % ports.length], '/x', headers) }
    }))
    const admitted = answers.filter(a => a.answer.status === 200)
    const byTenant = new Map<string, number>()
    for (const a of admitted) byTenant.set(a.tenant, (byTenant.get(a.tenant) ?? 0) + 1)
    const acme = admitted.filter(a => a.org === 'acme').length
    t.ok(admitted.length <= 90, `the route's budget holds (${admitted.length} admitted)`)
    if (exact) t.equal(admitted.length, 90, 'and is used to the last unit: no refusal elsewhere took any of it')
    t.ok(acme <= 50, `acme's limit holds (${acme})`)
    for (const [tenant, n] of byTenant) t.ok(n <= (tenant.startsWith('g') ? 10 : 30), `${tenant}'s own limit holds (${n})`)
    t.ok(answers.every(a => a.answer.status === 200 || a.answer.status === 429), 'every answer is a decision')
    // What each level counts is exactly what was admitted: refusals took nothing anywhere.
    const usage = async (keys: ReturnType<typeof storeKeys>): Promise<number> => (await apps[0].rateLimitStore.usage(keys)).minute
    t.ok(await within(2000, async () => await usage(storeKeys(prefix, 'route', 'downstream', undefined)) === admitted.length) < Infinity,
      'the route counts the admitted requests only')
    t.equal(await usage(storeKeys(prefix, 'organization', 'acme', undefined)), acme, 'acme counts its admitted requests only')
    for (const h of who) {
      t.equal(await usage(storeKeys(prefix, 'tenant', h['x-tenant'], undefined, h['x-org'])), byTenant.get(h['x-tenant']) ?? 0, `${h['x-tenant']} counts its admitted requests only`)
    }
    const scopes = new Set(answers.map(a => a.answer.headers['x-ratelimit-scope']).filter(s => s !== undefined))
    t.ok(scopes.has('route') && scopes.has('organization') && scopes.has('tenant'), `every level refused some (${[...scopes].join(', ')})`)
    return { admitted: admitted.length }
  })
}
