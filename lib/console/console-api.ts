// The admin routes the console reads besides the policy routes: the tenants table, a tenant's
// buckets, the latest quota alerts, this instance's store health and the environment multipliers.
// They are plain admin routes (JSON, behind authorize): scripts and other tools may read them too.
import type { FastifyInstance } from 'fastify'
import Type, { type Static } from 'typebox'
import type { PolicyManager } from '../policies/policy-manager.js'
import { TenantId } from '../policies/schemas.js'
import { TenantIndex, type IndexedTenant, type TenantSort } from './tenant-index.js'

const NullableInteger = Type.Union([Type.Integer(), Type.Null()])
const NullableString = Type.Union([Type.String(), Type.Null()])
const Count = Type.Object({ used: Type.Integer(), limit: NullableInteger })

// Query strings are not coerced by the admin validator: numbers are written as digits.
const PageLimit = Type.String({ pattern: '^([1-9]|[1-9][0-9]|1[0-9][0-9]|200)$', description: 'an integer from 1 to 200' })

export const TenantListQuery = Type.Object({
  search: Type.Optional(Type.String({ maxLength: 1024 })),
  sort: Type.Optional(Type.Union([Type.Literal('tenantId'), Type.Literal('tier'), Type.Literal('used'), Type.Literal('share')])),
  order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
  offset: Type.Optional(Type.String({ pattern: '^[0-9]{1,9}$', description: 'an integer >= 0' })),
  limit: Type.Optional(PageLimit)
}, { additionalProperties: false })

export const TenantRow = Type.Object({
  tenantId: Type.String(),
  tier: Type.String(),
  organizationId: NullableString,
  month: Count,
  minute: Count,
  hour: Count,
  concurrent: Type.Object({ inFlight: Type.Integer(), limit: NullableInteger }),
  override: Type.Boolean(),
  blocked: Type.Boolean(),
  shadow: Type.Boolean()
})

export const TenantListReply = Type.Object({
  month: Type.String(),
  total: Type.Integer(),
  offset: Type.Integer(),
  limit: Type.Integer(),
  indexedAt: Type.Integer(),
  rows: Type.Array(TenantRow)
})

export const EventsQuery = Type.Object({
  tenantId: Type.Optional(TenantId),
  limit: Type.Optional(PageLimit)
}, { additionalProperties: false })

const AlertEvent = Type.Object({
  id: Type.String(),
  scope: Type.String(),
  tenantId: Type.String(),
  tier: NullableString,
  bucket: NullableString,
  month: Type.String(),
  threshold: Type.Number(),
  used: Type.Integer(),
  quota: Type.Integer(),
  at: Type.Integer()
})

export const EventsReply = Type.Object({
  source: Type.Union([Type.Literal('stream'), Type.Literal('process'), Type.Literal('off')]),
  events: Type.Array(AlertEvent)
})

export const HealthReply = Type.Object({
  store: Type.Union([Type.Literal('redis'), Type.Literal('memory')]),
  reachable: Type.Union([Type.Boolean(), Type.Null()]),
  pingMs: Type.Union([Type.Number(), Type.Null()]),
  breaker: Type.Union([Type.Literal('closed'), Type.Literal('open')]),
  openNodes: Type.Array(Type.String()),
  fallback: Type.Boolean(),
  degraded: Type.Object({ admitted: Type.Integer(), refused: Type.Integer(), fallback: Type.Integer(), unsettled: Type.Integer(), lastAt: NullableInteger }),
  checkedAt: Type.Integer()
})

export const MultipliersReply = Type.Object({ environment: Type.String(), multipliers: Type.Record(Type.String(), Type.Number()) })

/** The routes' schemas, as adminSchemas lists them. */
export interface ConsoleApiSchemas {
  readonly tenants: object
  readonly buckets: object
  readonly events: object
  readonly health: object
  readonly multipliers: object
}

export function addConsoleApi (admin: FastifyInstance, config: object, schemas: ConsoleApiSchemas): void {
  const policies = admin.policies
  const status = admin.rateLimitStatus
  const index = new TenantIndex(policies)
  admin.addHook('onClose', async () => index.close())

  // The table: ordered and counted by the index, each row's numbers read now.
  admin.get<{ Querystring: Static<typeof TenantListQuery> }>('/tenants', { config, schema: schemas.tenants }, async request => {
    const { search = '', sort = 'share', order = 'desc', offset = '0', limit = '50' } = request.query
    const query = { search, sort: sort as TenantSort, order, offset: Number(offset), limit: Number(limit) }
    const page = await index.page(query)
    const rows = await Promise.all(page.tenants.map(async tenant => await liveRow(policies, tenant)))
    return { month: page.month, total: page.total, offset: query.offset, limit: query.limit, indexedAt: page.indexedAt, rows }
  })

  // A tenant's buckets with a monthly cap of their own: the month as indexed, the windows read now.
  admin.get<{ Params: { tenantId: string } }>('/tenants/:tenantId/buckets', { config, schema: schemas.buckets }, async request => {
    const { tenantId } = request.params
    const { month, entry } = await index.tenant(tenantId)
    const buckets = await Promise.all((entry?.buckets ?? []).map(async ({ bucket, used, quota }) =>
      ({ bucket, used, quota, usage: await policies.usage(tenantId, { bucket }) })))
    return { month, buckets }
  })

  admin.get<{ Querystring: Static<typeof EventsQuery> }>('/events', { config, schema: schemas.events }, async request => {
    const { tenantId, limit = '50' } = request.query
    return await status.recentAlerts({ limit: Number(limit), ...(tenantId !== undefined ? { tenantId } : {}) })
  })

  admin.get('/health', { config, schema: schemas.health }, async () => await status.health())

  admin.get('/multipliers', { config, schema: schemas.multipliers }, async () => await policies.listEnvironmentMultipliers())
}

/** A row of the table: the tenant's limits, badges and counts as they are now. */
async function liveRow (policies: PolicyManager, tenant: IndexedTenant): Promise<Static<typeof TenantRow>> {
  // usage() would find the tier again (a read of the seen tier); the tier resolve() found is given.
  const resolved = await policies.resolve(tenant.tenantId)
  const usage = await policies.usage(tenant.tenantId, { tier: resolved.tier })
  return {
    tenantId: tenant.tenantId,
    tier: resolved.tier,
    organizationId: usage.organizationId,
    month: { used: usage.month.used, limit: usage.month.limit },
    minute: { used: usage.minute.used, limit: usage.minute.limit },
    hour: { used: usage.hour.used, limit: usage.hour.limit },
    concurrent: { inFlight: usage.concurrent.inFlight, limit: usage.concurrent.limit },
    override: resolved.override !== null,
    blocked: resolved.blocked !== null,
    shadow: resolved.shadow
  }
}
