// The console's list of tenants active this month: who they are, their tier, and their month count,
// read from the month's usage records and held in memory, so that a page of 100,000 tenants is a
// slice of a sorted array, not a scan of Redis. The index orders the table and counts its rows; the
// numbers shown on a page are read live (see console-api.ts). It is rebuilt in the background once
// older than ten times its last build took (at least `minRefreshMs`): a few seconds for a few
// thousand tenants, about 40 s for 100,000, so rebuilding never takes more than a tenth of the
// time while someone watches. It is dropped when nobody asked for a page in `idleMs`.
import { monthOf } from '../alerts/alert-event.js'
import type { PolicyManager } from '../policies/policy-manager.js'

export interface IndexedBucket { bucket: string, used: number, quota: number | null }

export interface IndexedTenant {
  readonly tenantId: string
  /** The id in lower case, for a case-insensitive search. */
  readonly searchable: string
  readonly tier: string | null
  readonly used: number
  readonly quota: number | null
  /** Buckets with a monthly cap of their own, this month. */
  readonly buckets: IndexedBucket[]
}

export type TenantSort = 'tenantId' | 'tier' | 'used' | 'share'
export interface TenantQuery { search: string, sort: TenantSort, order: 'asc' | 'desc', offset: number, limit: number }
export interface TenantPage { month: string, total: number, indexedAt: number, tenants: IndexedTenant[] }

type Writable<T> = { -readonly [K in keyof T]: T[K] }

/** A rebuild waits at least this many times what the last build took. */
const REBUILD_SPACING = 10

interface Snapshot {
  readonly month: string
  readonly builtAt: number
  /** How long building it took, in ms. */
  readonly buildMs: number
  readonly tenants: Map<string, IndexedTenant>
  /** Ascending orders, made when first asked for. */
  readonly sorted: Map<TenantSort, IndexedTenant[]>
}

const ORDERS: Record<TenantSort, (a: IndexedTenant, b: IndexedTenant) => number> = {
  tenantId: (a, b) => compare(a.tenantId, b.tenantId),
  tier: (a, b) => compare(a.tier ?? '', b.tier ?? '') || compare(a.tenantId, b.tenantId),
  used: (a, b) => a.used - b.used || compare(a.tenantId, b.tenantId),
  share: (a, b) => shareOf(a) - shareOf(b) || a.used - b.used || compare(a.tenantId, b.tenantId)
}

export class TenantIndex {
  private snapshot: Snapshot | undefined
  private building: Promise<Snapshot> | undefined
  private lastAsked = 0
  private readonly idleTimer: NodeJS.Timeout

  constructor (
    private readonly policies: PolicyManager,
    private readonly minRefreshMs = 2_000,
    private readonly idleMs = 300_000
  ) {
    this.idleTimer = setInterval(() => {
      if (Date.now() - this.lastAsked > this.idleMs) this.snapshot = undefined
    }, Math.min(idleMs, 60_000))
    this.idleTimer.unref()
  }

  /** One page of the table, from the index (built first if there is none, or it is of another month). */
  async page (query: TenantQuery): Promise<TenantPage> {
    const snapshot = await this.current()
    let rows = this.sortedBy(snapshot, query.sort)
    if (query.search !== '') {
      const needle = query.search.toLowerCase()
      rows = rows.filter(row => row.searchable.includes(needle))
    }
    const total = rows.length
    const from = query.order === 'asc' ? query.offset : total - query.offset - query.limit
    const slice = rows.slice(Math.max(0, from), Math.max(0, from + query.limit))
    if (query.order === 'desc') slice.reverse()
    return { month: snapshot.month, total, indexedAt: snapshot.builtAt, tenants: slice }
  }

  /** One tenant's entry, as last indexed (undefined: no usage this month). */
  async tenant (tenantId: string): Promise<{ month: string, entry: IndexedTenant | undefined }> {
    const snapshot = await this.current()
    return { month: snapshot.month, entry: snapshot.tenants.get(tenantId) }
  }

  close (): void {
    clearInterval(this.idleTimer)
  }

  /** The index to answer from: fresh enough, or being rebuilt behind the one held. */
  private async current (): Promise<Snapshot> {
    this.lastAsked = Date.now()
    const held = this.snapshot
    if (held !== undefined && held.month === monthOf(Date.now())) {
      const refreshMs = Math.max(this.minRefreshMs, REBUILD_SPACING * held.buildMs)
      if (Date.now() - held.builtAt > refreshMs) this.rebuild().catch(() => {}) // the next page shows it
      return held
    }
    return await this.rebuild()
  }

  /** One build at a time; a page asked for meanwhile waits for it (or is served the older index). */
  private async rebuild (): Promise<Snapshot> {
    this.building ??= this.build().then(snapshot => {
      this.snapshot = snapshot
      return snapshot
    }).finally(() => { this.building = undefined })
    return await this.building
  }

  private async build (): Promise<Snapshot> {
    const builtAt = Date.now()
    const month = monthOf(builtAt)
    const tenants = new Map<string, Writable<IndexedTenant>>()
    const entry = (tenantId: string, tier: string | null): Writable<IndexedTenant> => {
      let found = tenants.get(tenantId)
      if (found === undefined) {
        found = { tenantId, searchable: tenantId.toLowerCase(), tier, used: 0, quota: null, buckets: [] }
        tenants.set(tenantId, found)
      }
      return found
    }
    for await (const row of this.policies.usageReport({ month })) {
      if (row.scope !== 'tenant') continue
      const tenant = entry(row.tenantId, row.tier)
      if (row.bucket === null) {
        // A tenant counted both alone and in an organization has two records: the month is their sum.
        tenant.used += row.used
      } else {
        tenant.buckets.push({ bucket: row.bucket, used: row.used, quota: row.quota })
      }
    }
    for (const tenantId of this.policies.tenantsWithPolicies()) entry(tenantId, null)
    // The share orders by the quota as it stands (an override, a tier's change), as each row shows
    // it, not by the quota the record kept from its latest admission.
    for (const tenant of tenants.values()) {
      const quota = this.policies.monthlyQuotaNow(tenant.tenantId, tenant.tier)
      tenant.quota = quota === Infinity ? null : quota
    }
    return { month, builtAt, buildMs: Date.now() - builtAt, tenants, sorted: new Map() }
  }

  private sortedBy (snapshot: Snapshot, sort: TenantSort): IndexedTenant[] {
    let sorted = snapshot.sorted.get(sort)
    if (sorted === undefined) {
      sorted = [...snapshot.tenants.values()].sort(ORDERS[sort])
      snapshot.sorted.set(sort, sorted)
    }
    return sorted
  }
}

/** Month used over quota; an unlimited quota counts as 0, a quota of 0 with usage as the most. */
function shareOf ({ used, quota }: IndexedTenant): number {
  if (quota === null) return 0
  if (quota === 0) return used > 0 ? Infinity : 0
  return used / quota
}

function compare (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
