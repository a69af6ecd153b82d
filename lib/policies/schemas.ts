// Every policy document has a schema: invalid input is refused before anything is stored.
import Type, { type TSchema } from 'typebox'
import { Compile, type Validator } from 'typebox/compile'
import { InvalidPolicyError } from '../errors.js'
import { PartialTierLimitsSchema, TierLimitsSchema } from '../options.js'
import { infinityToNull } from '../tiers.js'
import { explain } from '../validation.js'

export const TIER_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$'
export const TenantId = Type.String({ maxLength: 1024 })
export const TierName = Type.String({ pattern: TIER_NAME_PATTERN })
export const EnvironmentName = Type.String({ minLength: 1, maxLength: 64 })
const Seconds = Type.Number({ exclusiveMinimum: 0, maximum: 366 * 86_400 })

export const OverrideSchema = Type.Object({
  ...PartialTierLimitsSchema.properties,
  expiresInSeconds: Type.Optional(Seconds)
}, { additionalProperties: false })
export const MultiplierSchema = Type.Number({ exclusiveMinimum: 0, maximum: 1000 })
export const BlockSchema = Type.Object({
  seconds: Type.Optional(Seconds),
  reason: Type.Optional(Type.String({ maxLength: 500 }))
}, { additionalProperties: false })
export const UsageOptionsSchema = Type.Object({ bucket: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })) }, { additionalProperties: false })
export const ShadowScopeSchema = Type.Union([
  Type.Object({ scope: Type.Literal('global') }, { additionalProperties: false }),
  Type.Object({ scope: Type.Literal('tier'), tier: TierName }, { additionalProperties: false }),
  Type.Object({ scope: Type.Literal('tenant'), tenantId: TenantId }, { additionalProperties: false })
])
export { TierLimitsSchema }

const compiled = new Map<TSchema, Validator>()

/** Throws InvalidPolicyError naming the field when `value` does not fit `schema`. */
export function check (schema: TSchema, value: unknown, name: string): void {
  let validator = compiled.get(schema)
  if (validator === undefined) {
    validator = Compile(schema)
    compiled.set(schema, validator)
  }
  const normalised = value !== null && typeof value === 'object' ? infinityToNull(value) : value === Infinity ? null : value
  const problem = explain(validator, normalised, name)
  if (problem !== undefined) throw new InvalidPolicyError(problem)
}
