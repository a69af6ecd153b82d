// @maestro/rate-limiting/admin: JSON routes over fastify.policies, for operators and back offices.
//
//   await app.register(rateLimiting, { ... })
//   await app.register(rateLimitAdmin, { prefix: '/admin/rate-limits', authorize })
//
// The routes live in an encapsulated child context, so Fastify's `prefix` register option applies
// (prefixes of enclosing contexts too), and the hook, validator and 404s below touch these routes only.
import { Readable } from 'node:stream'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchemaCompiler, onRequestHookHandler } from 'fastify'
import fp from 'fastify-plugin'
import Type, { type Static, type TSchema } from 'typebox'
import { Compile } from 'typebox/compile'
import { AdminAuthorizationRequiredError, InvalidPolicyError } from './errors.js'
import { PartialTierLimitsSchema, TierLimitsSchema } from './options.js'
import { BlockSchema, EnvironmentName, MultiplierSchema, OrganizationId, OverrideSchema, SharedBudgetName, TenantId, TenantUsageQuery, TierName } from './policies/schemas.js'
import { usageText } from './usage-format.js'
import { addConsoleApi, EventsQuery, EventsReply, HealthReply, MultipliersReply, TenantListQuery, TenantListReply } from './console/console-api.js'
import { addConsolePage } from './console/console-page.js'
import { explain } from './validation.js'

export interface AdminOptions {
  /**
   * Required. Runs first on every admin route, before the body is read. To refuse a request, throw
   * (an error whose `statusCode` is 401 or 403) or send the reply yourself before the returned
   * promise settles; the route then does nothing.
   */
  authorize: (request: FastifyRequest, reply: FastifyReply) => Promise<void> | void
}

// ---- schemas: typebox, plain JSON Schema that Fastify's default ajv accepts as well ----

const NullableInteger = Type.Union([Type.Integer(), Type.Null()])
const NullableString = Type.Union([Type.String(), Type.Null()])
const LimitSource = Type.Union([Type.Literal('tier'), Type.Literal('override')])
const TierSource = Type.Union([Type.Literal('runtime'), Type.Literal('configured')])

const TenantParams = Type.Object({ tenantId: TenantId }, { additionalProperties: false })
const OrganizationParams = Type.Object({ organizationId: OrganizationId }, { additionalProperties: false })
const SharedParams = Type.Object({ name: SharedBudgetName }, { additionalProperties: false })
const TierParams = Type.Object({ name: TierName }, { additionalProperties: false })
const EnvironmentParams = Type.Object({ environment: EnvironmentName }, { additionalProperties: false })
const ResolveQuery = Type.Object({ tier: Type.Optional(TierName) }, { additionalProperties: false })
const UsageQuery = TenantUsageQuery
/** The month is judged by `usageReport`, whose message says what a month looks like. */
const UsageReportQuery = Type.Object({ month: Type.String({ description: 'YYYY-MM' }) }, { additionalProperties: false })
const TenantTierBody = Type.Object({ tier: TierName }, { additionalProperties: false })
const OrganizationTierBody = TenantTierBody
const MultiplierBody = Type.Object({ multiplier: MultiplierSchema }, { additionalProperties: false })
const ShadowBody = Type.Object({
  scope: Type.Union([Type.Literal('global'), Type.Literal('tier'), Type.Literal('tenant')]),
  tier: Type.Optional(TierName),
  tenantId: Type.Optional(TenantId),
  enabled: Type.Boolean()
}, { additionalProperties: false })

const OverrideReply = Type.Object({ ...PartialTierLimitsSchema.properties, expiresAt: NullableInteger })
const BlockedReply = Type.Object({ reason: Type.Union([Type.String(), Type.Null()]), expiresAt: NullableInteger })
const ResolvedReply = Type.Object({
  tenantId: Type.String(),
  tier: Type.String(),
  tierSource: Type.Union([Type.Literal('request'), Type.Literal('seen'), Type.Literal('tenant'), Type.Literal('default')]),
  environment: Type.String(),
  multiplier: Type.Number(),
  limits: TierLimitsSchema,
  sources: Type.Object({ requestsPerMinute: LimitSource, requestsPerHour: LimitSource, concurrentRequests: LimitSource, monthlyQuota: LimitSource }),
  override: Type.Union([OverrideReply, Type.Null()]),
  blocked: Type.Union([BlockedReply, Type.Null()]),
  shadow: Type.Boolean()
})
const OrganizationLimitSource = Type.Union([Type.Literal('tier'), Type.Literal('override'), Type.Literal('none')])
const ResolvedOrganizationReply = Type.Object({
  organizationId: Type.String(),
  tier: NullableString,
  tierSource: Type.Union([Type.Literal('request'), Type.Literal('seen'), Type.Literal('organization'), Type.Literal('none')]),
  environment: Type.String(),
  multiplier: Type.Number(),
  limits: TierLimitsSchema,
  sources: Type.Object({
    requestsPerMinute: OrganizationLimitSource, requestsPerHour: OrganizationLimitSource, concurrentRequests: OrganizationLimitSource, monthlyQuota: OrganizationLimitSource
  }),
  override: Type.Union([OverrideReply, Type.Null()])
})
const WindowReply = Type.Object({ limit: NullableInteger, used: Type.Integer(), remaining: NullableInteger })
const UsageReply = Type.Object({
  scope: Type.Union([Type.Literal('tenant'), Type.Literal('organization'), Type.Literal('route')]),
  id: Type.String(),
  tenantId: Type.String(),
  organizationId: NullableString,
  tier: NullableString,
  bucket: Type.Union([Type.String(), Type.Null()]),
  now: Type.Integer(),
  minute: WindowReply,
  hour: WindowReply,
  month: Type.Object({ ...WindowReply.properties, resetAt: Type.Integer() }),
  concurrent: Type.Object({ limit: NullableInteger, inFlight: Type.Integer() })
})
const TenantBucketsReply = Type.Object({
  month: Type.String(),
  buckets: Type.Array(Type.Object({ bucket: Type.String(), used: Type.Integer(), quota: NullableInteger, usage: UsageReply }))
})
const TierReply = Type.Object({ limits: TierLimitsSchema, source: TierSource })
const TiersReply = Type.Record(Type.String(), TierReply)
const NamedTierReply = Type.Object({ name: Type.String(), ...TierReply.properties })
const TenantTierReply = Type.Object({ tenantId: Type.String(), tier: Type.String() })
const OrganizationTierReply = Type.Object({ organizationId: Type.String(), tier: Type.String() })
const TenantBlockReply = Type.Object({ tenantId: Type.String(), blocked: BlockedReply })
const MultiplierReply = Type.Object({ environment: Type.String(), multiplier: Type.Number() })
const ShadowReply = Type.Object({ global: Type.Boolean(), tiers: Type.Array(Type.String()), tenants: Type.Array(Type.String()) })
const NotFoundReply = Type.Object({ statusCode: Type.Literal(404), error: Type.String(), message: Type.String() })
const NoContent = Type.Null()

const removal = { 204: NoContent, 404: NotFoundReply }

/** The schema of every admin route, by `METHOD path` (for OpenAPI documents or typed clients). */
export const adminSchemas = {
  'GET /tenants': { querystring: TenantListQuery, response: { 200: TenantListReply } },
  'GET /tenants/:tenantId': { params: TenantParams, querystring: ResolveQuery, response: { 200: ResolvedReply } },
  'GET /tenants/:tenantId/usage': { params: TenantParams, querystring: UsageQuery, response: { 200: UsageReply } },
  'DELETE /tenants/:tenantId/usage': { params: TenantParams, response: { 204: NoContent } },
  'GET /tenants/:tenantId/buckets': { params: TenantParams, response: { 200: TenantBucketsReply } },
  'GET /tenants/:tenantId/override': { params: TenantParams, response: { 200: OverrideReply, 404: NotFoundReply } },
  'PUT /tenants/:tenantId/override': { params: TenantParams, body: OverrideSchema, response: { 200: OverrideReply } },
  'DELETE /tenants/:tenantId/override': { params: TenantParams, response: removal },
  'PUT /tenants/:tenantId/tier': { params: TenantParams, body: TenantTierBody, response: { 200: TenantTierReply } },
  'DELETE /tenants/:tenantId/tier': { params: TenantParams, response: removal },
  'PUT /tenants/:tenantId/block': { params: TenantParams, body: BlockSchema, response: { 200: TenantBlockReply } },
  'DELETE /tenants/:tenantId/block': { params: TenantParams, response: removal },
  'GET /organizations/:organizationId': { params: OrganizationParams, querystring: ResolveQuery, response: { 200: ResolvedOrganizationReply } },
  'GET /organizations/:organizationId/usage': { params: OrganizationParams, querystring: ResolveQuery, response: { 200: UsageReply } },
  'DELETE /organizations/:organizationId/usage': { params: OrganizationParams, response: { 204: NoContent } },
  'GET /organizations/:organizationId/override': { params: OrganizationParams, response: { 200: OverrideReply, 404: NotFoundReply } },
  'PUT /organizations/:organizationId/override': { params: OrganizationParams, body: OverrideSchema, response: { 200: OverrideReply } },
  'DELETE /organizations/:organizationId/override': { params: OrganizationParams, response: removal },
  'GET /organizations/:organizationId/tier': { params: OrganizationParams, response: { 200: OrganizationTierReply, 404: NotFoundReply } },
  'PUT /organizations/:organizationId/tier': { params: OrganizationParams, body: OrganizationTierBody, response: { 200: OrganizationTierReply } },
  'DELETE /organizations/:organizationId/tier': { params: OrganizationParams, response: removal },
  'GET /shared/:name/usage': { params: SharedParams, response: { 200: UsageReply } },
  'GET /usage': { querystring: UsageReportQuery, produces: ['application/x-ndjson', 'text/csv'] },
  'GET /tiers': { response: { 200: TiersReply } },
  'PUT /tiers/:name': { params: TierParams, body: TierLimitsSchema, response: { 200: NamedTierReply } },
  'DELETE /tiers/:name': { params: TierParams, response: removal },
  'GET /multipliers/:environment': { params: EnvironmentParams, response: { 200: MultiplierReply } },
  'PUT /multipliers/:environment': { params: EnvironmentParams, body: MultiplierBody, response: { 200: MultiplierReply } },
  'DELETE /multipliers/:environment': { params: EnvironmentParams, response: removal },
  'GET /multipliers': { response: { 200: MultipliersReply } },
  'GET /shadow': { response: { 200: ShadowReply } },
  'PUT /shadow': { body: ShadowBody, response: { 200: ShadowReply } },
  'GET /events': { querystring: EventsQuery, response: { 200: EventsReply } },
  'GET /health': { response: { 200: HealthReply } }
} as const

// ---- validation: the PolicyManager's own compiler and wording ----

// Bodies handed whole to a PolicyManager method are named as that method names them, so an HTTP
// caller reads the very message the PolicyManager would give (`override.requestsPerMinute must be
// >= 0`). Other fields are named as they are (`tier`, `multiplier`, `tenantId`).
const ROOT_NAMES = new WeakMap<object, string>([[OverrideSchema, 'override'], [BlockSchema, 'block'], [TierLimitsSchema, 'limits']])

/**
 * Replaces ajv for the admin routes: unknown fields are refused, not silently removed, and nothing is
 * coerced ("5" is not 5), exactly as `fastify.policies` would judge the same input. A refusal is an
 * InvalidPolicyError (400, FST_MAESTRO_RL_INVALID_POLICY).
 */
const validatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const validator = Compile(schema)
  const root = ROOT_NAMES.get(schema)
  const part = httpPart ?? 'input'
  const named = root ?? part
  return (data: unknown) => {
    const problem = explain(validator, data, named)
    if (problem === undefined) return true
    const path = problem.slice(0, problem.indexOf(' '))
    const inPart = path.startsWith(named + '.') ? path.slice(named.length + 1) : ''
    const error = new InvalidPolicyError(root === undefined && inPart !== '' ? problem.slice(part.length + 1) : problem)
    // The body field at fault travels with the 400 (see invalidInputReply), so a form can show the
    // message next to it.
    if (httpPart === 'body' && inPart !== '') Object.assign(error, { field: inPart.split('.')[0] })
    return { error }
  }
}

/** A refused body names its field: `{ statusCode: 400, code, error, message, field }`. Other errors go on as they are. */
const invalidInputReply = (error: Error, _request: FastifyRequest, reply: FastifyReply): FastifyReply => {
  const field = (error as { field?: unknown }).field
  if (!(error instanceof InvalidPolicyError) || typeof field !== 'string') throw error
  return reply.code(400).send({ statusCode: 400, code: error.code, error: 'Bad Request', message: error.message, field })
}

/**
 * Runs `authorize` as the first hook. Written with a callback, not as an async hook: when authorize
 * sends a reply itself, the chain must stop even while that reply is still in the service's onSend
 * hooks (an async hook would let the route run anyway and change a policy for a refused caller).
 */
function authorizationHook (authorize: AdminOptions['authorize']): onRequestHookHandler {
  return function (request, reply, done) {
    let replied = false
    const slot = reply as unknown as { send?: FastifyReply['send'] }
    const send = reply.send
    slot.send = function (this: FastifyReply, payload?: unknown) {
      replied = true
      return send.call(this, payload)
    }
    const settle = (err?: unknown): void => {
      delete slot.send // back to the prototype's send
      if (err !== undefined) done(toError(err))
      else if (!replied && !reply.sent) done()
      // else: authorize answered; the route never runs.
    }
    let outcome: Promise<void> | void
    try {
      outcome = authorize(request, reply)
    } catch (err) {
      settle(err ?? null)
      return
    }
    Promise.resolve(outcome).then(() => settle(), err => settle(err ?? null))
  }
}

function toError (err: unknown): Error {
  if (err instanceof Error) return err
  return Object.assign(new Error('admin request refused'), { statusCode: 403 })
}

function notFound (reply: FastifyReply, message: string): FastifyReply {
  return reply.code(404).send({ statusCode: 404, error: 'Not Found', message })
}

/**
 * Whether an Accept header prefers CSV: `text/csv` named with a weight above zero and above that of
 * JSON Lines or JSON (the default when neither is named, or both equally).
 */
function acceptsCsv (accept: string | undefined): boolean {
  if (accept === undefined) return false
  const weights = new Map<string, number>()
  for (const part of accept.split(',')) {
    const [type, ...params] = part.split(';').map(p => p.trim().toLowerCase())
    const q = params.find(p => p.startsWith('q='))
    weights.set(type, q === undefined ? 1 : Number(q.slice(2)) || 0)
  }
  const csv = weights.get('text/csv') ?? 0
  return csv > 0 && csv > Math.max(weights.get('application/x-ndjson') ?? 0, weights.get('application/json') ?? 0)
}

interface TenantRoute { Params: Static<typeof TenantParams> }
interface OrganizationRoute { Params: Static<typeof OrganizationParams> }

// ---- the routes ----

const adminRoutes: FastifyPluginAsync<AdminOptions> = async (admin, options) => {
  const policies = admin.policies
  const s = adminSchemas
  const config = { rateLimit: false } // operators are never limited, nor counted
  admin.setValidatorCompiler(validatorCompiler)
  admin.setErrorHandler(invalidInputReply)
  admin.addHook('onRequest', authorizationHook(options.authorize))

  const removed = (reply: FastifyReply, existed: boolean, what: string): FastifyReply =>
    existed ? reply.code(204).send() : notFound(reply, what)

  // Tenants: the effective policy, usage, override, stored tier, block.
  admin.get<{ Params: Static<typeof TenantParams>, Querystring: Static<typeof ResolveQuery> }>('/tenants/:tenantId',
    { config, schema: s['GET /tenants/:tenantId'] },
    async request => await policies.resolve(request.params.tenantId, request.query.tier))

  admin.get<{ Params: Static<typeof TenantParams>, Querystring: Static<typeof UsageQuery> }>('/tenants/:tenantId/usage',
    { config, schema: s['GET /tenants/:tenantId/usage'] },
    async request => await policies.usage(request.params.tenantId, request.query))

  admin.delete<TenantRoute>('/tenants/:tenantId/usage', { config, schema: s['DELETE /tenants/:tenantId/usage'] }, async (request, reply) => {
    await policies.resetUsage(request.params.tenantId)
    return reply.code(204).send()
  })

  admin.get<TenantRoute>('/tenants/:tenantId/override', { config, schema: s['GET /tenants/:tenantId/override'] }, async (request, reply) => {
    const override = await policies.getTenantOverride(request.params.tenantId)
    return override ?? notFound(reply, `tenant ${request.params.tenantId} has no override`)
  })

  admin.put<{ Params: Static<typeof TenantParams>, Body: Static<typeof OverrideSchema> }>('/tenants/:tenantId/override',
    { config, schema: s['PUT /tenants/:tenantId/override'] },
    async request => {
      await policies.setTenantOverride(request.params.tenantId, request.body)
      return await policies.getTenantOverride(request.params.tenantId)
    })

  admin.delete<TenantRoute>('/tenants/:tenantId/override', { config, schema: s['DELETE /tenants/:tenantId/override'] }, async (request, reply) =>
    removed(reply, await policies.removeTenantOverride(request.params.tenantId), `tenant ${request.params.tenantId} has no override`))

  admin.put<{ Params: Static<typeof TenantParams>, Body: Static<typeof TenantTierBody> }>('/tenants/:tenantId/tier',
    { config, schema: s['PUT /tenants/:tenantId/tier'] },
    async request => {
      await policies.setTenantTier(request.params.tenantId, request.body.tier)
      return { tenantId: request.params.tenantId, tier: request.body.tier }
    })

  admin.delete<TenantRoute>('/tenants/:tenantId/tier', { config, schema: s['DELETE /tenants/:tenantId/tier'] }, async (request, reply) =>
    removed(reply, await policies.removeTenantTier(request.params.tenantId), `tenant ${request.params.tenantId} has no stored tier`))

  admin.put<{ Params: Static<typeof TenantParams>, Body: Static<typeof BlockSchema> }>('/tenants/:tenantId/block',
    { config, schema: s['PUT /tenants/:tenantId/block'] },
    async request => {
      await policies.block(request.params.tenantId, request.body)
      return { tenantId: request.params.tenantId, blocked: (await policies.resolve(request.params.tenantId)).blocked }
    })

  admin.delete<TenantRoute>('/tenants/:tenantId/block', { config, schema: s['DELETE /tenants/:tenantId/block'] }, async (request, reply) =>
    removed(reply, await policies.unblock(request.params.tenantId), `tenant ${request.params.tenantId} is not blocked`))

  // Organizations: the effective policy, usage (of the organization's own counters), override, stored tier.
  admin.get<OrganizationRoute & { Querystring: Static<typeof ResolveQuery> }>('/organizations/:organizationId',
    { config, schema: s['GET /organizations/:organizationId'] },
    async request => await policies.resolveOrganization(request.params.organizationId, request.query.tier))

  admin.get<OrganizationRoute & { Querystring: Static<typeof ResolveQuery> }>('/organizations/:organizationId/usage',
    { config, schema: s['GET /organizations/:organizationId/usage'] },
    async request => await policies.usage(request.params.organizationId, { scope: 'organization', ...request.query }))

  admin.delete<OrganizationRoute>('/organizations/:organizationId/usage', { config, schema: s['DELETE /organizations/:organizationId/usage'] }, async (request, reply) => {
    await policies.resetUsage(request.params.organizationId, { scope: 'organization' })
    return reply.code(204).send()
  })

  admin.get<OrganizationRoute>('/organizations/:organizationId/override', { config, schema: s['GET /organizations/:organizationId/override'] }, async (request, reply) => {
    const override = await policies.getOrganizationOverride(request.params.organizationId)
    return override ?? notFound(reply, `organization ${request.params.organizationId} has no override`)
  })

  admin.put<OrganizationRoute & { Body: Static<typeof OverrideSchema> }>('/organizations/:organizationId/override',
    { config, schema: s['PUT /organizations/:organizationId/override'] },
    async request => {
      await policies.setOrganizationOverride(request.params.organizationId, request.body)
      return await policies.getOrganizationOverride(request.params.organizationId)
    })

  admin.delete<OrganizationRoute>('/organizations/:organizationId/override', { config, schema: s['DELETE /organizations/:organizationId/override'] }, async (request, reply) =>
    removed(reply, await policies.removeOrganizationOverride(request.params.organizationId), `organization ${request.params.organizationId} has no override`))

  admin.get<OrganizationRoute>('/organizations/:organizationId/tier', { config, schema: s['GET /organizations/:organizationId/tier'] }, async (request, reply) => {
    const { organizationId } = request.params
    const tier = await policies.getOrganizationTier(organizationId)
    return tier === null ? notFound(reply, `organization ${organizationId} has no stored tier`) : { organizationId, tier }
  })

  admin.put<OrganizationRoute & { Body: Static<typeof OrganizationTierBody> }>('/organizations/:organizationId/tier',
    { config, schema: s['PUT /organizations/:organizationId/tier'] },
    async request => {
      await policies.setOrganizationTier(request.params.organizationId, request.body.tier)
      return { organizationId: request.params.organizationId, tier: request.body.tier }
    })

  admin.delete<OrganizationRoute>('/organizations/:organizationId/tier', { config, schema: s['DELETE /organizations/:organizationId/tier'] }, async (request, reply) =>
    removed(reply, await policies.removeOrganizationTier(request.params.organizationId), `organization ${request.params.organizationId} has no stored tier`))

  // Shared route budgets: the counters every caller of the routes naming one shares.
  admin.get<{ Params: Static<typeof SharedParams> }>('/shared/:name/usage', { config, schema: s['GET /shared/:name/usage'] }, async request =>
    await policies.usage(request.params.name, { scope: 'route' }))

  // A month's usage of every tenant and organization, streamed as it is read: JSON Lines, or CSV
  // when the caller accepts text/csv. A bad month is refused (400) before anything is sent.
  admin.get<{ Querystring: Static<typeof UsageReportQuery> }>('/usage', { config, schema: s['GET /usage'] }, async (request, reply) => {
    const rows = policies.usageReport({ month: request.query.month })
    const csv = acceptsCsv(request.headers.accept)
    reply.type(csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson; charset=utf-8')
    return reply.send(Readable.from(usageText(rows, csv ? 'csv' : 'json')))
  })

  // Tiers defined at runtime (over the configured ones).
  admin.get('/tiers', { config, schema: s['GET /tiers'] }, async () => await policies.listTiers())

  admin.put<{ Params: Static<typeof TierParams>, Body: Static<typeof TierLimitsSchema> }>('/tiers/:name',
    { config, schema: s['PUT /tiers/:name'] },
    async request => {
      await policies.setTier(request.params.name, request.body)
      return { name: request.params.name, ...(await policies.listTiers())[request.params.name] }
    })

  admin.delete<{ Params: Static<typeof TierParams> }>('/tiers/:name', { config, schema: s['DELETE /tiers/:name'] }, async (request, reply) =>
    removed(reply, await policies.removeTier(request.params.name), `tier ${request.params.name} is not defined at runtime`))

  // Environment multipliers.
  admin.get<{ Params: Static<typeof EnvironmentParams> }>('/multipliers/:environment', { config, schema: s['GET /multipliers/:environment'] }, async request =>
    ({ environment: request.params.environment, multiplier: await policies.getEnvironmentMultiplier(request.params.environment) }))

  admin.put<{ Params: Static<typeof EnvironmentParams>, Body: Static<typeof MultiplierBody> }>('/multipliers/:environment',
    { config, schema: s['PUT /multipliers/:environment'] },
    async request => {
      const { environment } = request.params
      await policies.setEnvironmentMultiplier(environment, request.body.multiplier)
      return { environment, multiplier: await policies.getEnvironmentMultiplier(environment) }
    })

  admin.delete<{ Params: Static<typeof EnvironmentParams> }>('/multipliers/:environment', { config, schema: s['DELETE /multipliers/:environment'] }, async (request, reply) =>
    removed(reply, await policies.removeEnvironmentMultiplier(request.params.environment), `environment ${request.params.environment} has no multiplier`))

  // Shadow mode.
  admin.get('/shadow', { config, schema: s['GET /shadow'] }, async () => await policies.shadowModes())

  admin.put<{ Body: Static<typeof ShadowBody> }>('/shadow', { config, schema: s['PUT /shadow'] }, async request => {
    const { scope, tier, tenantId, enabled } = request.body
    if (scope === 'tier') {
      if (tier === undefined || tenantId !== undefined) throw new InvalidPolicyError('scope tier takes a tier and no tenantId')
      await policies.setShadowMode({ scope, tier }, enabled)
    } else if (scope === 'tenant') {
      if (tenantId === undefined || tier !== undefined) throw new InvalidPolicyError('scope tenant takes a tenantId and no tier')
      await policies.setShadowMode({ scope, tenantId }, enabled)
    } else {
      if (tier !== undefined || tenantId !== undefined) throw new InvalidPolicyError('scope global takes no tier nor tenantId')
      await policies.setShadowMode({ scope }, enabled)
    }
    return await policies.shadowModes()
  })

  // The operator console: the routes it reads besides those above, and its page under /ui.
  addConsoleApi(admin, config, {
    tenants: s['GET /tenants'],
    buckets: s['GET /tenants/:tenantId/buckets'],
    events: s['GET /events'],
    health: s['GET /health'],
    multipliers: s['GET /multipliers']
  })
  addConsolePage(admin, config)
}

const rateLimitAdmin: FastifyPluginAsync<AdminOptions> = async (fastify, options) => {
  if (typeof options?.authorize !== 'function') throw new AdminAuthorizationRequiredError()
  // This function shares its parent's context (fastify-plugin), so `prefix` would not apply here:
  // it is passed on to the child context that holds the routes.
  const { prefix } = options as AdminOptions & { prefix?: string }
  await fastify.register(adminRoutes, { authorize: options.authorize, ...(prefix !== undefined ? { prefix } : {}) })
}

export default fp(rateLimitAdmin, { name: '@maestro/rate-limiting-admin', fastify: '5.x', dependencies: ['@maestro/rate-limiting'] })
export { rateLimitAdmin, AdminAuthorizationRequiredError }
