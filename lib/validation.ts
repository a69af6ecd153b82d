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
  // Unknown properties first (the likeliest typo), then the deepest error: unions report every branch
  // and then a summary at the union's own path, and the summary reads best.
  const unknown = errors.find(e => e.keyword === 'boolean' && e.schemaPath.endsWith('additionalProperties'))
  if (unknown !== undefined) return `${fieldName(root, unknown.instancePath)} is not a known field`
  const union = errors.find(e => e.keyword === 'anyOf')
  if (union !== undefined) {
    const branch = errors.filter(e => e.instancePath === union.instancePath && e.keyword !== 'anyOf').map(e => e.message)
    return `${fieldName(root, union.instancePath)} ${branch.length > 0 ? branch.join(' or ') : union.message}`
  }
  const first = errors[0]
  if (first === undefined) return `${root} is invalid`
  if (first.keyword === 'required') {
    const missing = (first.params.requiredProperties as string[] | undefined)?.[0]
    if (missing !== undefined) return `${fieldName(root, first.instancePath + '/' + missing)} is required`
  }
  return `${fieldName(root, first.instancePath)} ${first.message}`
}
