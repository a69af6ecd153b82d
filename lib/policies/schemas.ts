// Every policy document has a schema: invalid input is refused before anything is stored, and a
// stored entry that does not fit it (written by another tool or an older version) is not applied.
import Type, { type TSchema } from 'typebox'
import { Compile, type Validator } from 'typebox/compile'
import { InvalidPolicyError } from '../errors.js'
import { PartialTierLimitsSchema, TierLimitsSchema } from '../options.js'
import { infinityToNull } from '../tiers.js'
import { explain } from '../validation.js'

export const TIER_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$'
export const TenantId = Type.String({ maxLength: 1024 })
/** Not empty: the records of where tenants were seen use '' for "no organization". */
export const OrganizationId = Type.String({ minLength: 1, maxLength: 1024 })
/** The name of a shared route budget, as routes name it. */
export const SharedBudgetName = Type.String({ minLength: 1, maxLength: 256 })
export const TierName = Type.String({ pattern: TIER_NAME_PATTERN })
export const EnvironmentName = Type.String({ minLength: 1, maxLength: 64 })
const Seconds = Type.Number({ exclusiveMinimum: 0, maximum: 366 * 86_400 })

export const OverrideSchema = Type.Object({
  ...PartialTierLimitsSchema.properties,
  expiresInSeconds: Type.Optional(Seconds)
}, { additionalProperties: false })
export const MultiplierSchema = Type.Number({ exclusiveMinimum: 0, maximum: 1000 })
const BlockReason = Type.String({ maxLength: 500 })
export const BlockSchema = Type.Object({
  seconds: Type.Optional(Seconds),
  reason: Type.Optional(BlockReason)
}, { additionalProperties: false })
const BucketName = Type.String({ minLength: 1, maxLength: 256 })
export const UsageScope = Type.Union([Type.Literal('tenant'), Type.Literal('organization'), Type.Literal('route')])
export const UsageOptionsSchema = Type.Object({
  scope: Type.Optional(UsageScope),
  bucket: Type.Optional(BucketName),
  tier: Type.Optional(TierName),
  organizationId: Type.Optional(OrganizationId)
}, { additionalProperties: false })
/** A tenant's usage, over HTTP: the options that apply to a tenant. */
export const TenantUsageQuery = Type.Object({
  bucket: Type.Optional(BucketName),
  tier: Type.Optional(TierName),
  organizationId: Type.Optional(OrganizationId)
}, { additionalProperties: false })
export const ResetUsageOptionsSchema = Type.Object({
  scope: Type.Optional(Type.Union([Type.Literal('tenant'), Type.Literal('organization')])),
  organizationId: Type.Optional(OrganizationId)
}, { additionalProperties: false })
/** A month, `YYYY-MM` (1970-01 to 9999-12). */
export const USAGE_MONTH_PATTERN = '^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$'
export const UsageMonth = Type.String({ pattern: USAGE_MONTH_PATTERN })
export const UsageReportOptionsSchema = Type.Object({ month: UsageMonth }, { additionalProperties: false })
export const ShadowScopeSchema = Type.Union([
  Type.Object({ scope: Type.Literal('global') }, { additionalProperties: false }),
  Type.Object({ scope: Type.Literal('tier'), tier: TierName }, { additionalProperties: false }),
  Type.Object({ scope: Type.Literal('tenant'), tenantId: TenantId }, { additionalProperties: false })
])
export { TierLimitsSchema }

const StoredOverride = Type.Object(PartialTierLimitsSchema.properties, { additionalProperties: false, minProperties: 1 })

/**
 * What the value of a stored entry may be, by kind (the field's text before its first colon): what
 * the writes above store, with `null` for an unlimited limit. A reset only drops caches: any value.
 */
const STORED_VALUES: ReadonlyMap<string, TSchema> = new Map<string, TSchema>([
  ['tier', TierLimitsSchema],
  ['override', StoredOverride],
  ['orgOverride', StoredOverride],
  ['multiplier', MultiplierSchema],
  ['tenantTier', TierName],
  ['orgTier', TierName],
  ['configuredTier', Type.Object({ limits: TierLimitsSchema, by: Type.String({ maxLength: 256 }) }, { additionalProperties: false })],
  ['block', Type.Object({ reason: Type.Optional(Type.Union([BlockReason, Type.Null()])) }, { additionalProperties: false })],
  ['shadow', Type.Literal(true)],
  ['reset', Type.Unknown()],
  ['orgReset', Type.Unknown()]
])

/** The stored form of every entry: a positive whole version, an expiry time or null, a value. */
const StoredEntrySchema = Type.Object({
  v: Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER }),
  expiresAt: Type.Union([Type.Number(), Type.Null()]),
  value: Type.Unknown()
})

const compiled = new Map<TSchema, Validator>()

function validatorOf (schema: TSchema): Validator {
  let validator = compiled.get(schema)
  if (validator === undefined) {
    validator = Compile(schema)
    compiled.set(schema, validator)
  }
  return validator
}

/** Throws InvalidPolicyError naming the field when `value` does not fit `schema`. */
export function check (schema: TSchema, value: unknown, name: string): void {
  const normalised = value !== null && typeof value === 'object' ? infinityToNull(value) : value === Infinity ? null : value
  const problem = explain(validatorOf(schema), normalised, name)
  if (problem !== undefined) throw new InvalidPolicyError(problem)
}

/**
 * Why a stored entry of `field` cannot be applied (`override.requestsPerMinute must be >= 0`), or
 * undefined when it can. Checked as stored: `Infinity` (JSON's `1e400`) is no limit here. A field
 * of a kind this version does not know is not judged (it is not applied either).
 */
export function storedEntryProblem (field: string, entry: unknown): string | undefined {
  const envelope = explain(validatorOf(StoredEntrySchema), entry, 'entry')
  if (envelope !== undefined) return envelope
  const kind = field.split(':', 1)[0]
  const schema = STORED_VALUES.get(kind)
  return schema === undefined ? undefined : explain(validatorOf(schema), (entry as { value: unknown }).value, kind)
}
