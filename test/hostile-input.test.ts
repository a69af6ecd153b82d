// Tenant ids chosen by an attacker: each gets its own, bounded counters; none can reach another's.
import t from 'tap'
import { encodeId, storeKeys } from '../dist/index.js'
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
  const keys = await client.keys(`${prefix}:*`)
  t.equal(keys.length, 2)
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

t.test('an extractor returning garbage is an error, not a free pass', async t => {
  const app = await buildApp(t, { kind: 'memory', options: { tenantExtractor: () => ({ tenantId: 42 }) as never } })
  t.equal((await app.inject({ url: '/' })).statusCode, 500)
})
