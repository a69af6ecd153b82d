// One instance's in-memory view of the stored policies. Every change carries a version; a change is
// applied only when it is newer than what is held for that field, so a late message or an old
// snapshot never overwrites a newer state.
import { tierLimitsFrom, type TierLimits, type TierLimitsInput } from '../tiers.js'

/** A stored policy entry; `value` undefined is a removal remembered by its version (a tombstone). */
export interface StoredEntry {
  readonly v: number
  readonly expiresAt: number | null
  readonly value: unknown
}

export interface TimedPatch { readonly patch: Partial<TierLimitsInput>, readonly expiresAt: number | null }
export interface Block { readonly reason: string | undefined, readonly expiresAt: number | null }

/** Field names of the stored hash. */
export const Field = {
  tier: (name: string) => `tier:${name}`,
  override: (tenantId: string) => `override:${tenantId}`,
  multiplier: (environment: string) => `multiplier:${environment}`,
  tenantTier: (tenantId: string) => `tenantTier:${tenantId}`,
  block: (tenantId: string) => `block:${tenantId}`,
  shadowGlobal: () => 'shadow:global',
  shadowTier: (name: string) => `shadow:tier:${name}`,
  shadowTenant: (tenantId: string) => `shadow:tenant:${tenantId}`,
  /** A usage reset: holds nothing, but its notice makes every instance drop cached rejections. */
  reset: (tenantId: string) => `reset:${tenantId}`
}

export class PolicyState {
  /** Bumped on every applied change; caches compare it. */
  generation = 0
  readonly runtimeTiers = new Map<string, TierLimits>()
  readonly overrides = new Map<string, TimedPatch>()
  readonly multipliers = new Map<string, number>()
  readonly tenantTiers = new Map<string, string>()
  readonly blocks = new Map<string, Block>()
  readonly shadowTiers = new Set<string>()
  readonly shadowTenants = new Set<string>()
  shadowGlobal = false
  private readonly entries = new Map<string, StoredEntry>()

  /** Applies one change if it is newer than what is held. Returns whether it was applied. */
  apply (field: string, entry: StoredEntry): boolean {
    const held = this.entries.get(field)
    if (held !== undefined && held.v >= entry.v) return false
    this.entries.set(field, entry)
    this.index(field, entry.value === undefined || entry.value === null ? undefined : entry)
    this.generation++
    return true
  }

  /**
   * Replaces the view with a snapshot taken at `version`, keeping only what is newer than the
   * snapshot (changes that arrived while it was being read).
   */
  replaceWith (snapshot: ReadonlyMap<string, StoredEntry>, version: number): void {
    for (const [field, entry] of snapshot) this.apply(field, entry)
    for (const [field, held] of this.entries) {
      if (snapshot.has(field) || held.v > version) continue
      this.entries.delete(field)
      this.index(field, undefined)
      this.generation++
    }
  }

  entry (field: string): StoredEntry | undefined {
    const held = this.entries.get(field)
    return held?.value === undefined || held.value === null ? undefined : held
  }

  /** Fields whose expiry has passed, with the version they were stored at. */
  expired (now: number): Array<[string, number]> {
    const out: Array<[string, number]> = []
    for (const [field, entry] of this.entries) {
      if (entry.value !== undefined && entry.expiresAt !== null && entry.expiresAt <= now) out.push([field, entry.v])
    }
    return out
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
      case 'override':
        if (value === undefined) this.overrides.delete(key)
        else this.overrides.set(key, { patch: value as Partial<TierLimitsInput>, expiresAt: entry?.expiresAt ?? null })
        break
      case 'multiplier':
        if (value === undefined) this.multipliers.delete(key)
        else this.multipliers.set(key, value as number)
        break
      case 'tenantTier':
        if (value === undefined) this.tenantTiers.delete(key)
        else this.tenantTiers.set(key, value as string)
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

function toggle (set: Set<string>, key: string, on: boolean): void {
  if (on) set.add(key)
  else set.delete(key)
}
