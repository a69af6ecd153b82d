// Leases of requests still running are renewed while they run, so a long request (a stream, an
// upload) keeps its concurrency slot, and a crashed process loses its slots one lifetime later.
import type { FastifyBaseLogger } from 'fastify'
import type { StoreKeys } from './keys.js'
import type { RateLimitStore } from './store/types.js'

export interface HeldLease { readonly keys: StoreKeys, readonly id: string }

export class LeaseKeeper {
  private readonly held = new Set<HeldLease>()
  private readonly timer: NodeJS.Timeout

  constructor (private readonly store: RateLimitStore, leaseTtlMs: number, private readonly log: FastifyBaseLogger) {
    // Three renewals per lifetime: one lost renewal never costs a running request its slot.
    this.timer = setInterval(() => this.renew(), Math.max(50, Math.floor(leaseTtlMs / 3)))
    this.timer.unref()
  }

  add (lease: HeldLease): void {
    this.held.add(lease)
  }

  delete (lease: HeldLease): void {
    this.held.delete(lease)
  }

  get size (): number {
    return this.held.size
  }

  stop (): void {
    clearInterval(this.timer)
  }

  private renew (): void {
    if (this.held.size === 0) return
    this.store.renewLeases([...this.held]).catch((err: unknown) => {
      this.log.warn({ err }, 'rate limiting: could not renew concurrency leases; they will expire unless renewed later')
    })
  }
}
