// Type tests: what a strict TypeScript service sees. `npm test` compiles this file (the typecheck
// step, `tsc -p test/tsconfig.json`) and runs none of it: every `@ts-expect-error` line must be an
// error (else "unused directive" fails the check), and every `expectType` must hold exactly.
import Fastify, { type FastifyError } from 'fastify'
import { Redis } from 'ioredis'
import rateLimiting, {
  type RateLimitStatus, type StoreHealth, type RecentAlertsReply,
  RateLimitExceededError, TenantBlockedError,
  type CostFunction, type Decision, type PolicyManager, type RateLimitContext, type RateLimitStore, type Refunded, type RejectReason, type RouteRateLimitConfig, type TierLimits
} from '../dist/index.js'
import adminRoutes from '../dist/admin.js'

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends (<T>() => T extends B ? 1 : 2) ? true : false
function expectType<T extends true> (): T | undefined { return undefined }

const app = Fastify()

// Options: known names and value types only.
await app.register(rateLimiting, { keyPrefix: 'svc', failMode: 'closed', headers: 'compact', tiers: { gold: { requestsPerMinute: 100, requestsPerHour: null, concurrentRequests: 5, monthlyQuota: 1000 } } })
await app.register(rateLimiting, { redis: new Redis({ lazyConnect: true }), tenantExtractor: (request) => ({ tenantId: String(request.headers['x-tenant']), tier: 'gold' }) })
// An organization above the tenant.
await app.register(rateLimiting, { tenantExtractor: () => ({ tenantId: 'team-a', tier: 'gold', organizationId: 'acme', organizationTier: 'enterprise' }) })
// @ts-expect-error an organization id is a string
await app.register(rateLimiting, { tenantExtractor: () => ({ tenantId: 'team-a', organizationId: 42 }) })
// @ts-expect-error a misspelt option
await app.register(rateLimiting, { keyPrefx: 'svc' })
// @ts-expect-error failMode is 'open' or 'closed'
await app.register(rateLimiting, { failMode: 'maybe' })
// @ts-expect-error headers is a boolean or 'compact'
await app.register(rateLimiting, { headers: 'full' })
// @ts-expect-error the extractor returns { tenantId, tier? }, not a string
await app.register(rateLimiting, { tenantExtractor: () => 'acme' })
// @ts-expect-error the admin routes need authorize
await app.register(adminRoutes, {})

// Decorators.
expectType<Equal<typeof app.policies, PolicyManager>>()
expectType<Equal<typeof app.rateLimitStore, RateLimitStore>>()
expectType<Equal<typeof app.rateLimitStatus, RateLimitStatus>>()
expectType<Equal<Awaited<ReturnType<typeof app.rateLimitStatus.health>>, StoreHealth>>()
expectType<Equal<StoreHealth['reachable'], boolean | null>>()
expectType<Equal<Awaited<ReturnType<typeof app.rateLimitStatus.recentAlerts>>, RecentAlertsReply>>()
expectType<Equal<RecentAlertsReply['source'], 'stream' | 'process' | 'off'>>()

// Route config: a boolean or the route's settings; wrong value types fail.
app.get('/off', { config: { rateLimit: false } }, async () => ({}))
app.post('/render', { config: { rateLimit: { shared: { name: 'renderer', concurrentRequests: 8 } } } }, async () => ({}))
// @ts-expect-error a shared budget's limits are numbers
app.post('/render2', { config: { rateLimit: { shared: { concurrentRequests: '8' } } } }, async () => ({}))
app.get('/export', { config: { rateLimit: { cost: 5, bucket: 'export', limits: { requestsPerMinute: 2 } } } }, async () => ({}))
// @ts-expect-error cost is a number
app.get('/a', { config: { rateLimit: { cost: '5' } } }, async () => ({}))
// A cost may be a function of the request, returning a number or a promise of one.
app.post('/bulk', { config: { rateLimit: { cost: (request) => (request.body as { items: unknown[] }).items.length } } }, async () => ({}))
app.post('/bulk-async', { config: { rateLimit: { cost: async (request) => Number(request.headers['x-items']) } } }, async () => ({}))
const bulkCost: CostFunction = (request) => request.url.length
app.post('/bulk-named', { config: { rateLimit: { cost: bulkCost } satisfies RouteRateLimitConfig } }, async () => ({}))
// @ts-expect-error a cost function returns a number, not a string
app.post('/e', { config: { rateLimit: { cost: () => '3' } } }, async () => ({}))
// @ts-expect-error nor a promise of a string
app.post('/f', { config: { rateLimit: { cost: async () => '3' } } }, async () => ({}))
// @ts-expect-error limits take numbers (or null for unlimited)
app.get('/b', { config: { rateLimit: { limits: { requestsPerMinute: 'many' } } } }, async () => ({}))
// Fastify infers a route's config type from the literal, so a misspelt key inside it is only caught
// at boot (the route's config is validated then) unless the literal is checked on its own:
// @ts-expect-error a misspelt route setting, caught by `satisfies`
app.get('/c', { config: { rateLimit: { cots: 5 } satisfies RouteRateLimitConfig } }, async () => ({}))

// request.rateLimit: null on routes the limiter does not run on.
app.get('/d', async (request) => {
  expectType<Equal<typeof request.rateLimit, RateLimitContext | null>>()
  const context = request.rateLimit
  if (context === null) return {}
  expectType<Equal<typeof context.decision, Decision | undefined>>()
  expectType<Equal<typeof context.limits, TierLimits>>()
  expectType<Equal<typeof context.tier, string>>()
  // @ts-expect-error the context is read-only
  context.cost = 2
  expectType<Equal<typeof context.organizationId, string | undefined>>()
  expectType<Equal<NonNullable<typeof context.decision>['scope'], 'tenant' | 'organization' | 'route' | undefined>>()
  return { left: context.decision?.minute.remaining }
})

// Refusals are Fastify errors an error handler can tell apart.
app.setErrorHandler((err: FastifyError, _request, reply) => {
  if (err instanceof RateLimitExceededError || err instanceof TenantBlockedError) {
    const reason: string = (err as FastifyError & { reason: string }).reason
    return reply.code(err.statusCode ?? 429).send({ reason })
  }
  return reply.send(err)
})

// Costs known later, and the limiter outside HTTP hooks.
app.post('/complete', { config: { rateLimit: { cost: 500, refundWhen: (_request, reply) => reply.statusCode >= 500 } } }, async (request) => {
  request.rateLimit?.settle(120)
  // @ts-expect-error settle takes a number
  request.rateLimit?.settle('120')
  return {}
})
// @ts-expect-error refundWhen answers a boolean
app.get('/e', { config: { rateLimit: { refundWhen: () => 'yes' } satisfies RouteRateLimitConfig } }, async () => ({}))
const consumed = await app.rateLimiter.consume({ tenantId: 'acme', tier: 'gold' }, { cost: 2, bucket: 'ws', lease: true })
expectType<Equal<typeof consumed.allowed, boolean>>()
expectType<Equal<typeof consumed.release, (() => void) | undefined>>()
const peeked = await app.rateLimiter.peek({ anonymous: '203.0.113.9' })
expectType<Equal<typeof peeked.reason, RejectReason | 'blocked' | undefined>>()
const refunded = await app.rateLimiter.refund({ tenantId: 'acme' }, { cost: 3 })
expectType<Equal<typeof refunded, Refunded>>()
// @ts-expect-error an identity names a tenant or an anonymous address
await app.rateLimiter.consume({ tenant: 'acme' })
export const results = [consumed, peeked, refunded]
