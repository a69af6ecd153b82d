// Usage records written as the producing side stores them (docs/policies.md, "Usage records"):
// a hash `<subjectBase>usage:<yyyymm>` with id, scope, tier, q, quota, b:<bucket>, bq:<bucket>.
import type { ChainableCommander } from 'ioredis'
import { subjectBase } from '../../dist/keys.js'

export interface StoredUsage {
  scope: 'tenant' | 'organization'
  id: string
  /** A tenant's organization: where its keys live. */
  organizationId?: string
  tier?: string
  q: number
  /** Absent: unlimited (stored as ''). */
  quota?: number
  buckets?: Record<string, { used: number, quota: number }>
}

export function usageKey (prefix: string, usage: StoredUsage, yyyymm: string): string {
  return subjectBase(prefix, usage.scope, usage.id, usage.organizationId) + 'usage:' + yyyymm
}

/** Queues the HSET and EXPIRE of one record (kept an hour: tests clean up after themselves too). */
export function writeUsage (pipeline: ChainableCommander, prefix: string, usage: StoredUsage, yyyymm: string): string {
  const key = usageKey(prefix, usage, yyyymm)
  const fields: Record<string, string> = { id: usage.id, scope: usage.scope, q: String(usage.q), quota: usage.quota === undefined ? '' : String(usage.quota) }
  if (usage.tier !== undefined) fields.tier = usage.tier
  for (const [name, bucket] of Object.entries(usage.buckets ?? {})) {
    fields['b:' + name] = String(bucket.used)
    fields['bq:' + name] = String(bucket.quota)
  }
  pipeline.hset(key, fields).expire(key, 3600)
  return key
}

/** The rows usageReport gives for one record: the subject's, then its buckets by name. */
export function expectedRows (usage: StoredUsage): Array<Record<string, unknown>> {
  const base = { tenantId: usage.id, scope: usage.scope, tier: usage.tier ?? null }
  return [
    { ...base, bucket: null, used: usage.q, quota: usage.quota ?? null },
    ...Object.keys(usage.buckets ?? {}).sort().map(name => ({ ...base, bucket: name, used: usage.buckets?.[name].used, quota: usage.buckets?.[name].quota }))
  ]
}

/** A stable order for comparing reports (the store's order is the scan's). */
export function sorted<T extends object> (rows: T[]): T[] {
  const key = (row: T): string => {
    const { scope, tenantId, bucket, used } = row as Record<string, unknown>
    return JSON.stringify([scope, tenantId, bucket ?? '', used])
  }
  return [...rows].sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)
}
