// Tenant ids chosen by an attacker: each gets its own, bounded counters; none can reach another's.
import t from 'tap'
import type { RateLimitingOptions } from '../dist/index.js'
import { encodeId, storeKeys } from '../dist/keys.js'
import { buildApp, headerTenant } from './helpers/app.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'
import { STORE_KINDS } from './helpers/stores.js'

const HOSTILE = [
  '', ' ', 'x'.repeat(10_240), '{acme}', 'acme}', '{', '}{', '*', '?', '[a-z]', 'a\nb', 'a\r\nSET x 1', '\u0000',
  'ACME', 'acme', 'Ångström', 'A\u030Angstr\u00f6m', 'emoji-🚦', '\uD800', '\uDBFF', 't:acme', 'a:acme', '~abc',
  'all', 'b.search', 'acme:v1:{t:acme}'
]

t.test('encodeId: distinct ids never collide, and keys stay bounded and brace-free', async t => {
  const encoded = HOSTILE.map(encodeId)
  t.equal(new Set(encoded).size, HOSTILE.length, 'every id encodes differently (case, normalisation and lone surrogates included)')
  for (const id of HOSTILE) {
    const keys = storeKeys('maestro-rl', 'tenant', id, id)
    const tags = keys.counters.match(/\{[^}]*\}/g) ?? []
    t.equal(tags.length, 1, `one hash tag for ${JSON.stringify(id.slice(0, 20))}`)
    t.equal(keys.counters.split('{').length, 2, 'no injected brace')
    t.ok(keys.counters.length <= 120, 'bounded length')
    t.notMatch(keys.counters, /[\s*?[\]]/, 'no whitespace or glob characters')
  }
  t.equal(encodeId('acme'), 'acme', 'plain ids stay readable')
})

for (const kind of STORE_KINDS) {
  t.test(`${kind} store: hostile tenant ids through the plugin`, async t => {
    const app = await buildApp(t, {
      kind,
      options: {
        tenantExtractor: (request) => ({ tenantId: JSON.parse(request.headers['x-id'] as string) as string, tier: 'starter' }),
        tiers: { starter: { requestsPerMinute: 2, requestsPerHour: null, concurrentRequests: null, monthlyQuota: null } }
      }
    })
    for (const id of HOSTILE) {
      const headers = { 'x-id': JSON.stringify(id) }
      const first = await app.inject({ url: '/', headers })
      t.equal(first.headers['x-ratelimit-remaining-minute'], '1', `fresh counters for ${JSON.stringify(id.slice(0, 20))}`)
      await app.inject({ url: '/', headers })
      t.equal((await app.inject({ url: '/', headers })).statusCode, 429, 'and correct ones')
    }
  })
}

t.test('Redis keys of hostile ids share one slot per tenant', async t => {
  const client = sharedRedis(t)
  const prefix = uniquePrefix(t, client)
  const app = await buildApp(t, { kind: 'redis', keyPrefix: prefix, options: { tenantExtractor: headerTenant } }, app => {
    app.get('/', async () => 'ok')
    app.get('/b', { config: { rateLimit: { bucket: '{evil}' } } }, async () => 'ok')
  })
  await app.inject({ url: '/', headers: { 'x-tenant': '{evil}' } })
  await app.inject({ url: '/b', headers: { 'x-tenant': '{evil}' } })
  await new Promise(resolve => setTimeout(resolve, 20)) // leases are given back just after the response
  // The policies hash (the service's tiers, recorded at boot) is shared by every tenant.
  const keys = (await client.keys(`${prefix}:*`)).filter(k => k !== `${prefix}:v1:{policies}`)
  t.equal(keys.length, 3, 'two counters hashes and the month\'s usage record (the lease sets are empty again)')
  const slots = await Promise.all(keys.map(async k => await client.call('CLUSTER', 'KEYSLOT', k).catch(() => null)))
  const tags = new Set(keys.map(k => /\{([^}]*)\}/.exec(k)?.[1]))
  t.equal(tags.size, 1, 'one hash tag for the tenant, whatever the bucket')
  if (slots.every(s => s !== null)) t.equal(new Set(slots).size, 1, 'one cluster slot')
})

t.test('the default extractor trusts no client header', async t => {
  const app = await buildApp(t, { kind: 'memory' })
  const forged = { 'x-tenant': 'victim', 'x-tier': 'platform_admin', 'x-tenant-id': 'victim', authorization: 'Bearer admin', 'x-forwarded-for': '1.2.3.4' }
  const res = await app.inject({ url: '/', headers: forged, remoteAddress: '10.7.7.7' })
  t.equal(res.headers['x-ratelimit-limit-minute'], '5', 'still anonymous')
  for (let i = 0; i < 4; i++) await app.inject({ url: '/', headers: { 'x-forwarded-for': `9.9.9.${i}` }, remoteAddress: '10.7.7.7' })
  t.equal((await app.inject({ url: '/', remoteAddress: '10.7.7.7' })).statusCode, 429, 'X-Forwarded-For does not make a new client without trustProxy')
})

t.test('with trustProxy, the forwarded client address is the key', async t => {
  const app = await buildApp(t, { kind: 'memory', server: { trustProxy: true } })
  for (let i = 0; i < 5; i++) await app.inject({ url: '/', headers: { 'x-forwarded-for': '203.0.113.9' }, remoteAddress: '10.0.0.1' })
  t.equal((await app.inject({ url: '/', headers: { 'x-forwarded-for': '203.0.113.9' }, remoteAddress: '10.0.0.1' })).statusCode, 429)
  t.equal((await app.inject({ url: '/', headers: { 'x-forwarded-for': '203.0.113.10' }, remoteAddress: '10.0.0.1' })).statusCode, 200)
})

t.test('a failing extractor: anonymous by default, 401 or 500 by option, never a free pass', async t => {
  const extractors: Record<string, RateLimitingOptions['tenantExtractor']> = {
    garbage: () => ({ tenantId: 42 }) as never,
    'no object': () => 'acme' as never,
    throws: () => { throw new Error('auth backend down') },
    rejects: async () => { throw new Error('auth backend down') },
    'never resolves': async () => await new Promise(() => {})
  }
  for (const [name, tenantExtractor] of Object.entries(extractors)) {
    const anonymous = await buildApp(t, { kind: 'memory', options: { tenantExtractor, extractorTimeoutMs: 100 } })
    const started = Date.now()
    const res = await anonymous.inject({ url: '/' })
    t.equal(res.statusCode, 200, `${name}: served`)
    t.equal(res.headers['x-ratelimit-limit-minute'], '5', `${name}: as anonymous, the tightest tier`)
    t.ok(Date.now() - started < 1000, `${name}: within the extractor deadline`)
    const strict = await buildApp(t, { kind: 'memory', options: { tenantExtractor, extractorTimeoutMs: 100, onExtractorError: 'unauthorized' } })
    const refused = await strict.inject({ url: '/' })
    t.equal(refused.statusCode, 401, `${name}: 401 by option`)
    t.equal(refused.json().code, 'FST_MAESTRO_RL_EXTRACTOR_FAILED')
    const failing = await buildApp(t, { kind: 'memory', options: { tenantExtractor, extractorTimeoutMs: 100, onExtractorError: 'error' } })
    t.equal((await failing.inject({ url: '/' })).statusCode, 500, `${name}: 500 by option`)
  }
})

t.test('IPv6 clients are grouped by network; IPv4-mapped addresses count as IPv4', async t => {
  const app = await buildApp(t, { kind: 'memory' })
  for (let i = 0; i < 5; i++) await app.inject({ url: '/', remoteAddress: `2001:db8:1:2::${i.toString(16)}` })
  t.equal((await app.inject({ url: '/', remoteAddress: '2001:db8:1:2:ffff:ffff:ffff:ffff' })).statusCode, 429, 'rotating within the /64 does not escape')
  t.equal((await app.inject({ url: '/', remoteAddress: '2001:db8:1:3::1' })).statusCode, 200, 'another /64 is another client')
  for (let i = 0; i < 5; i++) await app.inject({ url: '/', remoteAddress: '192.0.2.7' })
  t.equal((await app.inject({ url: '/', remoteAddress: '::ffff:192.0.2.7' })).statusCode, 429, 'same IPv4 client')
  const wide = await buildApp(t, { kind: 'memory', options: { ipv6Subnet: 48 } })
  for (let i = 0; i < 5; i++) await wide.inject({ url: '/', remoteAddress: `2001:db8:1:${i}::1` })
  t.equal((await wide.inject({ url: '/', remoteAddress: '2001:db8:1:ffff::1' })).statusCode, 429, 'the prefix is configurable')
})
