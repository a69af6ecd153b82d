// Which limits a tier name stands for, with the fallback for names nobody defined.
import type { FastifyBaseLogger } from 'fastify'
import type { TierLimits } from './tiers.js'

/** Unknown names are remembered (to log each once) up to this many; a flood of names can't grow memory. */
const MAX_REMEMBERED_UNKNOWN = 1000

export class TierTable {
  private readonly tiers: Map<string, TierLimits>
  private readonly unknownSeen = new Set<string>()

  constructor (
    tiers: ReadonlyMap<string, TierLimits>,
    readonly defaultTier: string,
    private readonly log: FastifyBaseLogger
  ) {
    this.tiers = new Map(tiers)
  }

  /** The known tier a requested name stands for: itself, or the default tier (logged once per name). */
  nameOf (requested: string | undefined): string {
    if (requested === undefined) return this.defaultTier
    if (this.tiers.has(requested)) return requested
    if (this.unknownSeen.size < MAX_REMEMBERED_UNKNOWN && !this.unknownSeen.has(requested)) {
      this.unknownSeen.add(requested)
      this.log.warn({ tier: requested, fallback: this.defaultTier }, 'rate limiting: unknown tier, using the default tier')
    }
    return this.defaultTier
  }

  /** Limits of a known tier (see nameOf). */
  limitsOf (name: string): TierLimits {
    return this.tiers.get(name) ?? (this.tiers.get(this.defaultTier) as TierLimits)
  }

  has (name: string): boolean {
    return this.tiers.has(name)
  }

  set (name: string, limits: TierLimits): void {
    this.tiers.set(name, limits)
    this.unknownSeen.delete(name)
  }

  delete (name: string): boolean {
    return this.tiers.delete(name)
  }

  entries (): IterableIterator<[string, TierLimits]> {
    return this.tiers.entries()
  }
}
