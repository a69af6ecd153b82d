// Usage: npm run build && node scripts/console-screenshots.mjs
//
// The screenshots of docs/console.md: a demo service (the plugin and its admin routes, in this
// process, on a free loopback port) gets traffic from a handful of tenants, some close to their
// monthly quota, then Chromium opens each console page at 1280 × 800 and writes
// docs/console/tenants.png, tenant.png and platform.png.
//
//   REDIS_URL      count in Redis (a key prefix of this run's own, deleted at the end); unset: memory
//   CHROMIUM_PATH  the browser (default /usr/bin/chromium)
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { chromium } from 'playwright-core'
import rateLimiting from '../dist/index.js'
import rateLimitAdmin from '../dist/admin.js'

const OUT = new URL('../docs/console/', import.meta.url)
const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const REDIS_URL = process.env.REDIS_URL ?? ''
const ADMIN = '/admin/rate-limits'
const USER = 'operator'
const PASSWORD = randomBytes(12).toString('hex')
const BASIC = 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64')

// Small monthly quotas, so that a few hundred requests bring tenants near them.
const TIERS = {
  free: { requestsPerMinute: 60, requestsPerHour: 1000, concurrentRequests: 5, monthlyQuota: 500 },
  team: { requestsPerMinute: 300, requestsPerHour: 10_000, concurrentRequests: 20, monthlyQuota: 5000 },
  business: { requestsPerMinute: 1000, requestsPerHour: null, concurrentRequests: 50, monthlyQuota: 50_000 }
}

// tenant → tier, month count (most of it in one bulk call), requests this minute, exports
const TENANTS = [
  ['acme', 'team', 4210, 37, 85],
  ['globex', 'free', 470, 12, 0],
  ['umbrella', 'free', 500, 0, 0],
  ['initech', 'business', 12_000, 140, 20],
  ['hooli', 'team', 900, 20, 0],
  ['stark-industries', 'free', 120, 5, 0],
  ['wayne-enterprises', 'business', 3000, 60, 0],
  ['spam-bot-7', 'free', 40, 40, 0]
]

const redis = REDIS_URL === '' ? undefined : new Redis(REDIS_URL)
const keyPrefix = 'console-shots-' + randomBytes(4).toString('hex')
const app = Fastify({ logger: false })
await app.register(rateLimiting, {
  ...(redis === undefined ? { store: 'memory' } : { redis }),
  keyPrefix,
  tiers: TIERS,
  defaultTier: 'free',
  environment: 'production',
  tenantExtractor: (request) => {
    const tenantId = request.headers['x-tenant']
    return typeof tenantId === 'string' ? { tenantId, tier: String(request.headers['x-tier']) } : null
  }
})

let release
const gate = new Promise(resolve => { release = resolve })
app.get('/', async () => ({ ok: true }))
app.get('/slow', async () => { await gate; return { ok: true } }) // held open: requests in flight
app.post('/export', { config: { rateLimit: { bucket: 'exports', limits: { monthlyQuota: 100 } } } }, async () => ({ ok: true }))
// A bulk import counted by its size, in the tenant's month (its own minute and hour unlimited).
app.post('/import', {
  config: { rateLimit: { bucket: 'import', cost: (request) => Number(request.query.n), limits: { requestsPerMinute: null, requestsPerHour: null, concurrentRequests: null } } }
}, async () => ({ ok: true }))
await app.register(rateLimitAdmin, {
  prefix: ADMIN,
  authorize: (request, reply) => {
    if (request.headers.authorization !== BASIC) reply.code(401).header('www-authenticate', 'Basic realm="rate limits"').send()
  }
})
await app.listen({ port: 0, host: '127.0.0.1' })
const base = `http://127.0.0.1:${app.server.address().port}`

const as = (tenantId, tier) => ({ 'x-tenant': tenantId, 'x-tier': tier })
for (const [tenantId, tier, month, minute, exports] of TENANTS) {
  // in tenths, so that each quota alert fires at about its own threshold
  for (let left = month - minute - exports; left > 0;) {
    const n = Math.min(left, Math.ceil(TIERS[tier].monthlyQuota / 10))
    await app.inject({ method: 'POST', url: `/import?n=${n}`, headers: as(tenantId, tier) })
    left -= n
  }
  for (let i = 0; i < minute; i++) await app.inject({ url: '/', headers: as(tenantId, tier) })
  for (let i = 0; i < exports; i++) await app.inject({ method: 'POST', url: '/export', headers: as(tenantId, tier) })
}
await app.inject({ url: '/', headers: as('umbrella', 'free') }) // refused: its quota is spent
const held = [['acme', 'team'], ['acme', 'team'], ['initech', 'business']].map(([id, tier]) => app.inject({ url: '/slow', headers: as(id, tier) }))

await app.policies.setTenantOverride('initech', { requestsPerMinute: 2000, monthlyQuota: 100_000 })
await app.policies.block('spam-bot-7', { reason: 'credential stuffing, ticket OPS-412' })
await app.policies.setShadowMode({ scope: 'tenant', tenantId: 'hooli' }, true)
await app.policies.setTier('enterprise-eu', { requestsPerMinute: 5000, requestsPerHour: null, concurrentRequests: 200, monthlyQuota: null })
await app.policies.setEnvironmentMultiplier('staging', 0.5)

const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: ['--no-sandbox'] })
try {
  const context = await browser.newContext({
    viewport: { width: 1280, height: 800 },
    colorScheme: 'light',
    httpCredentials: { username: USER, password: PASSWORD }
  })
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  mkdirSync(OUT, { recursive: true })
  const shoot = async (hash, ready, name) => {
    await page.goto(`${base}${ADMIN}/ui/${hash}`)
    await ready()
    await page.locator('p.meta', { hasText: /^Updated/ }).waitFor()
    const path = fileURLToPath(new URL(name, OUT))
    await page.screenshot({ path, fullPage: true })
    console.log('wrote', path)
  }
  await shoot('#/tenants', () => page.locator('tbody tr').nth(TENANTS.length - 1).waitFor(), 'tenants.png')
  await shoot('#/tenants/acme', () => page.locator('ol.events li').first().waitFor(), 'tenant.png')
  await shoot('#/platform', () => page.locator('section table').last().waitFor(), 'platform.png')
} finally {
  await browser.close()
  release()
  await Promise.all(held)
  await app.close()
  if (redis !== undefined) {
    const keys = await redis.keys(`${keyPrefix}:*`)
    if (keys.length > 0) await redis.del(...keys)
    await redis.quit()
  }
}
