// Names each subject in its usage record (see RateLimitStore.describeUsage) once per month and tier
// per process: the request path pays one WeakMap lookup (the limiter reuses one StoreKeys per subject).
import { encodeId, type StoreKeys } from '../keys.js'
import { MonthCache } from '../store/calendar.js'
import type { AdmitLevel, RateLimitStore } from '../store/types.js'

export class UsageNotes {
  private readonly noted = new WeakMap<StoreKeys, { month: number, tier: string | null }>()
  private readonly months = new MonthCache()

  constructor (private readonly store: RateLimitStore) {}

  /** A tenant's request (on `bucket`'s counters, if any), and its organization's level when it has one. */
  note (keys: StoreKeys, tenantId: string, tier: string, levels: readonly AdmitLevel[] | undefined, bucket?: string): void {
    if (this.store.describeUsage === undefined) return
    const month = this.months.of(Date.now()).id
    this.noteOne(keys, month, 'tenant', tenantId, tier, bucket)
    const org = levels?.[0]
    if (org?.scope === 'organization' && org.id !== undefined) this.noteOne(org.keys, month, 'organization', org.id, org.tier ?? null)
  }

  private noteOne (keys: StoreKeys, month: number, scope: 'tenant' | 'organization', id: string, tier: string | null, bucket?: string): void {
    const known = this.noted.get(keys)
    if (known !== undefined && known.month === month && known.tier === tier) return
    this.noted.set(keys, { month, tier })
    // A bucket whose key holds its name encoded (route buckets, long names) is named in the record.
    const encoded = bucket === undefined ? undefined : encodeId(bucket)
    this.store.describeUsage?.(keys, { scope, id, tier, ...(encoded === undefined || encoded === bucket ? {} : { bucket: { encoded, name: bucket as string } }) })
  }
}
