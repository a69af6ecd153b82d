// One circuit breaker: after `threshold` failures in a row it opens, and for `cooldownMs` decisions
// skip the store; then one request probes it, and its success closes the breaker again.

export interface BreakerOptions {
  /** Consecutive failures that open the breaker. */
  threshold: number
  /** How long the breaker stays open before one probe is let through, in ms. */
  cooldownMs: number
  /** Reports when the breaker opens and closes again (for logs). */
  onStateChange?: (state: 'open' | 'closed', cause: unknown) => void
}

export class CircuitBreaker {
  private state: 'closed' | 'open' | 'half-open' = 'closed'
  private failures = 0
  private openedAt = 0

  constructor (private readonly options: BreakerOptions) {}

  get closed (): boolean {
    return this.state === 'closed'
  }

  /** Whether this request may call the store: always while closed, as the one probe once cooled down. */
  allows (): boolean {
    if (this.state === 'closed') return true
    if (this.state === 'half-open') return false // one probe at a time
    if (Date.now() - this.openedAt < this.options.cooldownMs) return false
    this.state = 'half-open' // this request is the probe
    return true
  }

  succeeded (): void {
    if (this.state !== 'closed') this.options.onStateChange?.('closed', undefined)
    this.state = 'closed'
    this.failures = 0
  }

  failed (err: unknown): void {
    this.failures++
    if (this.state === 'half-open' || (this.state === 'closed' && this.failures >= this.options.threshold)) {
      if (this.state === 'closed') this.options.onStateChange?.('open', err)
      this.state = 'open'
      this.openedAt = Date.now()
    }
  }
}
