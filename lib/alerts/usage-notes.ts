// Names each subject in its usage record (see RateLimitStore.describeUsage) once per month and tier
// per process: the request path pays one WeakMap lookup (the limiter reuses one StoreKeys per subject).
import type { StoreKeys } from '../keys.js'
import { MonthCache } from '../store/calendar.js'
import type { AdmitLevel, RateLimitStore } from '../store/types.js'

export class UsageNotes {
  private readonly noted = new WeakMap<StoreKeys, { month: number, tier: string | null }>()
  private readonly months = new MonthCache()

  constructor (private readonly store: RateLimitStore) {}

  /** A tenant's request, and its organization's level when it has one. */
  note (keys: StoreKeys, tenantId: string, tier: string, levels: readonly AdmitLevel[] | undefined): void {
    if (this.store.describeUsage === undefined) return
    const month = this.months.of(Date.now()).id
    this.noteOne(keys, month, 'tenant', tenantId, tier)
    const org = levels?.[0]
    if (org?.scope === 'organization' && org.id !== undefined) this.noteOne(org.keys, month, 'organization', org.id, org.tier ?? null)
  }

  private noteOne (keys: StoreKeys, month: number, scope: 'tenant' | 'organization', id: string, tier: string | null): void {
    const known = this.noted.get(keys)
    if (known !== undefined && known.month === month && known.tier === tier) return
    this.noted.set(keys, { month, tier })
    this.store.describeUsage?.(keys, { scope, id, tier })
  }
}
