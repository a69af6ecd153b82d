// One instance's in-memory view of the stored policies. The store numbers its changes (versions); the
// view follows the announced changes one version after the other, and a snapshot of the whole store
// is the truth. A notice out of that order (a gap, an older or conflicting version: a missed
// notice, a store that lost its data or was rewritten, a forged notice) is not trusted: the view
// asks for a snapshot instead. So no entry outlives the store's own by its version.
import { isDeepStrictEqual } from 'node:util'
import { tierLimitsFrom, type TierLimits, type TierLimitsInput } from '../tiers.js'

/** A stored policy entry; `value` undefined is a removal remembered by its version (a tombstone). */
export interface StoredEntry {
  readonly v: number
  readonly expiresAt: number | null
  readonly value: unknown
}

/** An entry as held, with the local order in which it was applied. */
interface Held extends StoredEntry { readonly seq: number }

export interface TimedPatch { readonly patch: Partial<TierLimitsInput>, readonly expiresAt: number | null }
export interface Block { readonly reason: string | undefined, readonly expiresAt: number | null }
/** A tier as a service configured it in code, recorded under the prefix at its boot. */
export interface RecordedTier { readonly limits: TierLimits, readonly by: string }

/** Field names of the stored hash. */
export const Field = {
  tier: (name: string) => `tier:${name}`,
  override: (tenantId: string) => `override:${tenantId}`,
  multiplier: (environment: string) => `multiplier:${environment}`,
  tenantTier: (tenantId: string) => `tenantTier:${tenantId}`,
  /** A tier a service configured in code: `{ limits, by }`, written at its boot. */
  configuredTier: (name: string) => `configuredTier:${name}`,
  block: (tenantId: string) => `block:${tenantId}`,
  shadowGlobal: () => 'shadow:global',
  shadowTier: (name: string) => `shadow:tier:${name}`,
  shadowTenant: (tenantId: string) => `shadow:tenant:${tenantId}`,
  /** A usage reset: holds nothing, but its notice makes every instance drop cached rejections. */
  reset: (tenantId: string) => `reset:${tenantId}`,
  /** An organization's override: limits for the sum of its tenants' traffic. */
  orgOverride: (organizationId: string) => `orgOverride:${organizationId}`,
  /** The tier of an organization whose extractor reports none. */
  orgTier: (organizationId: string) => `orgTier:${organizationId}`,
  /** A reset of an organization's own counters (as `reset`, for organizations). */
  orgReset: (organizationId: string) => `orgReset:${organizationId}`
}

export class PolicyState {
  /** Bumped on every applied change; caches compare it. */
  generation = 0
  readonly runtimeTiers = new Map<string, TierLimits>()
  readonly recordedTiers = new Map<string, RecordedTier>()
  readonly overrides = new Map<string, TimedPatch>()
  readonly multipliers = new Map<string, number>()
  readonly tenantTiers = new Map<string, string>()
  readonly blocks = new Map<string, Block>()
  readonly orgOverrides = new Map<string, TimedPatch>()
  readonly orgTiers = new Map<string, string>()
  readonly shadowTiers = new Set<string>()
  readonly shadowTenants = new Set<string>()
  shadowGlobal = false
  private readonly entries = new Map<string, Held>()
  /** Local order of applied changes: tells what was applied after a snapshot was requested. */
  private seq = 0
  /** The store's latest version this view has followed without a gap; undefined before a snapshot. */
  private version: number | undefined
  /** `seq` when the latest notice advanced `version`. */
  private followedAt = 0

  /**
   * Applies this instance's own write (the store's reply) if it is newer than what is held. Returns
   * whether the view now holds it; false when it holds a higher version (a later change, or a
   * version the store no longer has): only a snapshot can tell which.
   */
  apply (field: string, entry: StoredEntry): boolean {
    const held = this.entries.get(field)
    if (held === undefined || held.v < entry.v) this.set(field, entry)
    else if (!sameEntry(held, entry)) return false
    return true
  }

  /**
   * Takes another instance's change: applied when it is the store's next version, ignored when it
   * repeats what is held. Returns false for anything else (a gap, an older or a conflicting
   * version): the view may be wrong, and needs a snapshot.
   */
  receive (field: string, entry: StoredEntry): boolean {
    const held = this.entries.get(field)
    if (this.version !== undefined && entry.v === this.version + 1) {
      this.version = entry.v
      this.followedAt = ++this.seq
      if (held === undefined || held.v < entry.v) {
        this.set(field, entry)
        return true
      }
    }
    return held !== undefined && sameEntry(held, entry)
  }

  /** To pass to `replaceWith`: taken just before the snapshot is requested. */
  mark (): number {
    return this.seq
  }

  /**
   * Makes the view the snapshot (the store at `version`, requested at `mark`). Only a change
   * applied after the mark and newer than everything the snapshot saw is kept over it: it was
   * written while the snapshot was on its way.
   */
  replaceWith (snapshot: ReadonlyMap<string, StoredEntry>, version: number, mark: number): void {
    const keep = (held: Held): boolean => held.seq > mark && held.v > version
    for (const [field, held] of this.entries) {
      if (snapshot.has(field) || keep(held)) continue
      this.entries.delete(field)
      this.index(field, undefined)
      this.generation++
    }
    for (const [field, entry] of snapshot) {
      const held = this.entries.get(field)
      if (held === undefined || (!keep(held) && !sameEntry(held, entry))) this.set(field, entry)
    }
    // Notices followed since the mark may be ahead of the snapshot; else the snapshot sets the pace.
    this.version = this.followedAt > mark && this.version !== undefined ? Math.max(version, this.version) : version
  }

  entry (field: string): StoredEntry | undefined {
    const held = this.entries.get(field)
    return held?.value === undefined || held.value === null ? undefined : held
  }

  /** Whether anything is stored: a policy, or a service's record of its tiers. */
  holdsAny (): boolean {
    for (const held of this.entries.values()) if (held.value !== undefined && held.value !== null) return true
    return false
  }

  /** Fields whose expiry has passed, with the version they were stored at. */
  expired (now: number): Array<[string, number]> {
    const out: Array<[string, number]> = []
    for (const [field, entry] of this.entries) {
      if (entry.value !== undefined && entry.expiresAt !== null && entry.expiresAt <= now) out.push([field, entry.v])
    }
    return out
  }

  private set (field: string, entry: StoredEntry): void {
    this.entries.set(field, { ...entry, seq: ++this.seq })
    this.index(field, entry.value === undefined || entry.value === null ? undefined : entry)
    this.generation++
  }

  private index (field: string, entry: StoredEntry | undefined): void {
    const colon = field.indexOf(':')
    const kind = field.slice(0, colon)
    const key = field.slice(colon + 1)
    const value = entry?.value
    switch (kind) {
      case 'tier':
        if (value === undefined) this.runtimeTiers.delete(key)
        else this.runtimeTiers.set(key, tierLimitsFrom(value as TierLimitsInput))
        break
      case 'configuredTier':
        if (value === undefined) this.recordedTiers.delete(key)
        else {
          const recorded = value as { limits: TierLimitsInput, by: string }
          this.recordedTiers.set(key, { limits: tierLimitsFrom(recorded.limits), by: recorded.by })
        }
        break
      case 'override':
        timedPatch(this.overrides, key, entry)
        break
      case 'orgOverride':
        timedPatch(this.orgOverrides, key, entry)
        break
      case 'multiplier':
        if (value === undefined) this.multipliers.delete(key)
        else this.multipliers.set(key, value as number)
        break
      case 'tenantTier':
        if (value === undefined) this.tenantTiers.delete(key)
        else this.tenantTiers.set(key, value as string)
        break
      case 'orgTier':
        if (value === undefined) this.orgTiers.delete(key)
        else this.orgTiers.set(key, value as string)
        break
      case 'block':
        if (value === undefined) this.blocks.delete(key)
        else this.blocks.set(key, { reason: (value as { reason?: string }).reason, expiresAt: entry?.expiresAt ?? null })
        break
      case 'shadow':
        if (key === 'global') this.shadowGlobal = value !== undefined
        else if (key.startsWith('tier:')) toggle(this.shadowTiers, key.slice(5), value !== undefined)
        else if (key.startsWith('tenant:')) toggle(this.shadowTenants, key.slice(7), value !== undefined)
        break
    }
  }
}

function sameEntry (a: StoredEntry, b: StoredEntry): boolean {
  return a.v === b.v && a.expiresAt === b.expiresAt && isDeepStrictEqual(a.value, b.value)
}

/** Holds (or drops, for a removal) one override, tenant's or organization's. */
function timedPatch (patches: Map<string, TimedPatch>, key: string, entry: StoredEntry | undefined): void {
  if (entry?.value === undefined) patches.delete(key)
  else patches.set(key, { patch: entry.value as Partial<TierLimitsInput>, expiresAt: entry.expiresAt })
}

function toggle (set: Set<string>, key: string, on: boolean): void {
  if (on) set.add(key)
  else set.delete(key)
}
