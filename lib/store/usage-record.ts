// The usage records of one subject and month, as the stores hold them, and the lines they report.
// The Redis form is a hash `<subjectBase>usage:<yyyymm>` with the fields
//   id, scope, tier?, q, quota?, b:<bucket>, bq:<bucket>
// (quota and bq absent or '' when unlimited); this file is the one place that reads it.
import { KEY_LAYOUT_VERSION } from '../keys.js'
import { StoreReplyError } from '../errors.js'
import type { UsageRecord } from './types.js'

/** One subject's month: its own count and quota, and each bucket's under a cap of its own. */
export interface SubjectMonthUsage {
  scope: 'tenant' | 'organization'
  id: string
  tier: string | null
  /** The subject's month count. */
  q: number
  /** Its monthly quota at the last admission; null: unlimited. */
  quota: number | null
  buckets: Map<string, { used: number, quota: number | null }>
}

/**
 * Who a usage record's key names: the tenant (`{t:<id>}`, or `{o:<org>}:t:<id>/`) or the
 * organization (`{o:<id>}:org/`). The id as the key holds it: the real one for plain ids, else its
 * hashed form (`~…`, see encodeId).
 */
export function subjectOfUsageKey (key: string): { id: string, scope: 'tenant' | 'organization' } {
  const tagged = /\{([ot]):([^}]*)\}(?::t:([^/]*)\/)?/.exec(key)
  if (tagged === null) return { id: key, scope: 'tenant' }
  if (tagged[3] !== undefined) return { id: tagged[3], scope: 'tenant' }
  return { id: tagged[2], scope: tagged[1] === 'o' ? 'organization' : 'tenant' }
}

/** `2026-12` → `202612`, the form keys use. */
export function monthKey (month: string): string {
  return month.slice(0, 4) + month.slice(5, 7)
}

/** The SCAN pattern of every usage record of `month` (yyyymm) under `keyPrefix`, glob characters of the prefix escaped. */
export function usageKeyPattern (keyPrefix: string, month: string): string {
  const escaped = keyPrefix.replace(/[*?[\]\\]/g, '\\$&')
  return `${escaped}:${KEY_LAYOUT_VERSION}:*usage:${month}`
}

/** The report lines of one subject's month: its own first, then its buckets by name. */
export function recordsOf (usage: SubjectMonthUsage): UsageRecord[] {
  const { scope, id, tier } = usage
  const records: UsageRecord[] = [{ scope, id, tier, bucket: null, used: usage.q, quota: usage.quota }]
  const names = [...usage.buckets.keys()].sort()
  for (const bucket of names) {
    const { used, quota } = usage.buckets.get(bucket) as { used: number, quota: number | null }
    records.push({ scope, id, tier, bucket, used, quota })
  }
  return records
}

/**
 * Reads one stored hash. Undefined for an empty one (it expired since the scan found it). A hash
 * that does not fit the format is an error naming the key and the field: a bill must not silently
 * leave a subject out.
 */
export function parseUsageHash (key: string, hash: Record<string, string>): SubjectMonthUsage | undefined {
  const fields = Object.keys(hash)
  if (fields.length === 0) return undefined
  const bad = (field: string, problem: string): never => {
    throw new StoreReplyError(`usage record ${key}: field ${field} ${problem}`)
  }
  // Nothing counted (a subject without a monthly quota, named only): no usage to report.
  if (hash.q === undefined && !fields.some(f => f.startsWith('b:'))) return undefined
  // The name is written apart from the counts, a moment later: a record counted and not named yet
  // (or whose instance stopped before naming it) reports the id its key holds.
  const fromKey = subjectOfUsageKey(key)
  const id = hash.id ?? fromKey.id
  const scope = hash.scope ?? fromKey.scope
  if (scope !== 'tenant' && scope !== 'organization') bad('scope', `must be "tenant" or "organization" (got ${JSON.stringify(scope ?? null)})`)
  const buckets = new Map<string, { used: number, quota: number | null }>()
  const bucketOf = (name: string): { used: number, quota: number | null } => {
    let bucket = buckets.get(name)
    if (bucket === undefined) buckets.set(name, bucket = { used: 0, quota: null })
    return bucket
  }
  // A bucket's name as given, where its key had to encode it (bn:<encoded>).
  const named = (encoded: string): string => hash['bn:' + encoded] ?? encoded
  for (const field of fields) {
    if (field.startsWith('b:')) bucketOf(named(field.slice(2))).used = count(hash[field], field, bad)
    else if (field.startsWith('bq:')) bucketOf(named(field.slice(3))).quota = cap(hash[field], field, bad)
  }
  return {
    scope: scope as 'tenant' | 'organization',
    id: id as string,
    tier: hash.tier === undefined || hash.tier === '' ? null : hash.tier,
    q: hash.q === undefined ? 0 : count(hash.q, 'q', bad),
    quota: cap(hash.quota, 'quota', bad),
    buckets
  }
}

const WHOLE = /^\d{1,16}$/

function count (text: string, field: string, bad: (field: string, problem: string) => never): number {
  const value = Number(text)
  return WHOLE.test(text) && Number.isSafeInteger(value) ? value : bad(field, `must be a whole number (got ${JSON.stringify(text)})`)
}

/** A quota: absent or '' is unlimited. */
function cap (text: string | undefined, field: string, bad: (field: string, problem: string) => never): number | null {
  return text === undefined || text === '' ? null : count(text, field, bad)
}
