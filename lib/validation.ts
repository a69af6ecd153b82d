// Turns typebox validation errors into one sentence that names the field.
import type { Validator } from 'typebox/compile'

interface TypeboxError { keyword: string, schemaPath: string, instancePath: string, message: string, params: Record<string, unknown> }

/** `/tiers/gold/requestsPerMinute` → `tiers.gold.requestsPerMinute`. */
function fieldName (root: string, instancePath: string): string {
  const parts = instancePath.split('/').slice(1).map(p => p.replace(/~1/g, '/').replace(/~0/g, '~'))
  return [root, ...parts].filter(p => p !== '').join('.') || root
}

/** Returns undefined when valid, else a message such as `tiers.gold.requestsPerMinute must be >= 0`. */
export function explain (validator: Validator, value: unknown, root: string): string | undefined {
  if (validator.Check(value)) return undefined
  const errors = validator.Errors(value) as unknown as TypeboxError[]
  // Unknown properties first (the likeliest typo); then the deepest path, which names the field
  // best. A union reports each branch there: say them all ("must be integer or must be null").
  const unknown = errors.find(e => e.keyword === 'boolean' && e.schemaPath.endsWith('additionalProperties'))
  if (unknown !== undefined) return `${fieldName(root, unknown.instancePath)} is not a known field`
  const required = errors.find(e => e.keyword === 'required')
  const missing = (required?.params.requiredProperties as string[] | undefined)?.[0]
  if (required !== undefined && missing !== undefined) return `${fieldName(root, required.instancePath + '/' + missing)} is required`
  const depth = (e: TypeboxError): number => e.instancePath.split('/').length
  const deepest = Math.max(...errors.map(depth))
  const here = errors.filter(e => depth(e) === deepest)
  const first = here[0]
  if (first === undefined) return `${root} is invalid`
  // Literals are named ("must be "onRequest" or "preHandler""), not "must be equal to constant".
  const consts = here.filter(e => e.keyword === 'const')
  const literals = consts.map(e => JSON.stringify(e.params.allowedValue))
  const literalPaths = new Set(consts.map(e => e.schemaPath))
  const messages = [...new Set(here.filter(e => e.keyword !== 'anyOf' && !literalPaths.has(e.schemaPath)).map(e => e.message))]
  if (literals.length > 0) messages.push(`must be ${literals.join(' or ')}`)
  return `${fieldName(root, first.instancePath)} ${messages.length > 0 ? messages.join(' or ') : first.message}`
}
