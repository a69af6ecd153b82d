// Keeps Redis trouble away from the request path: a circuit breaker that stops calling a failing
// store for a while, and an optional local fallback limiter. (The deadline of each decision is the
// Redis store's: it is measured from the moment a call is sent, see SentCall in admit-batcher.ts.)
import type { StoreKeys } from '../keys.js'
import { MemoryStore, type MemoryStoreOptions } from './memory-store.js'
import { StoreUnavailableError } from './store-unavailable.js'
import { admitAsPromise, admitInto, type AdmitRequest, type Decision, type DecisionSink, type DirectAdmit, type RateLimitStore, type Usage } from './types.js'
import { applyMultiplier } from '../tiers.js'

export { StoreUnavailableError }

export interface ResilienceOptions {
  /** Consecutive failures that open the breaker. */
  breakerThreshold: number
  /** How long the breaker stays open before one probe is let through, in ms. */
  breakerCooldownMs: number
  /** Share of each limit the local fallback enforces on this instance (undefined: no fallback). */
  fallbackShare: number | undefined
  /** Reports when the store fails and recovers (for logs). */
  onStateChange?: (state: 'open' | 'closed', cause: unknown) => void
}

type BreakerState = 'closed' | 'open' | 'half-open'

/** A decision waiting for the store: its outcome counts for the breaker before it reaches the sink. */
class Waiter implements DecisionSink {
  constructor (private readonly owner: ResilientStore, readonly request: AdmitRequest, readonly sink: DecisionSink) {}

  decided (decision: Decision): void {
    this.owner.answered(this, decision)
  }

  failed (err: unknown): void {
    this.owner.refused(this, err)
  }
}

/** Wraps a store; decisions it fails (or cannot make, the breaker open) are errors, or fallback decisions. */
export class ResilientStore implements RateLimitStore, DirectAdmit {
  readonly kind: 'redis' | 'memory'
  private state: BreakerState = 'closed'
  private failures = 0
  private openedAt = 0
  /** The local fallback limiter, when there is one. */
  readonly fallback: MemoryStore | undefined
  /** Leases the fallback granted (given back to it, not to the store). */
  private readonly fallbackLeases = new Set<string>()

  constructor (readonly inner: RateLimitStore & { readonly ready?: boolean }, private readonly options: ResilienceOptions & { fallbackSettings?: MemoryStoreOptions }) {
    this.kind = inner.kind
    this.fallback = options.fallbackShare === undefined ? undefined : new MemoryStore(options.fallbackSettings)
  }

  /** Whether the breaker is open (decisions skip the store). */
  get circuitOpen (): boolean {
    return this.state !== 'closed'
  }

  admit (request: AdmitRequest): Promise<Decision> {
    return admitAsPromise(this, request)
  }

  /** `admit` without a promise (the limiter's path): the outcome goes to `sink`. */
  admitTo (request: AdmitRequest, sink: DecisionSink): void {
    if (this.state === 'open') {
      if (Date.now() - this.openedAt < this.options.breakerCooldownMs) return this.withoutStore(request, sink, new StoreUnavailableError('circuit-open'))
      this.state = 'half-open' // this request is the probe
    } else if (this.state === 'half-open') {
      return this.withoutStore(request, sink, new StoreUnavailableError('circuit-open')) // one probe at a time
    }
    if (this.inner.ready === false) return this.withoutStore(request, sink, this.failed(new StoreUnavailableError('not-connected')))
    admitInto(this.inner, request, new Waiter(this, request, sink))
  }

  /** The store could not decide: the local fallback does, when there is one; else the error stands. */
  private withoutStore (request: AdmitRequest, sink: DecisionSink, err: unknown): void {
    if (this.fallback === undefined) sink.failed(err)
    else this.admitLocally(request).then(decision => sink.decided(decision), (fallbackErr: unknown) => sink.failed(fallbackErr))
  }

  /** Roughly enforced while the store is away: each instance holds its share of every limit. */
  private async admitLocally (request: AdmitRequest): Promise<Decision> {
    const fallback = this.fallback as MemoryStore
    const limits = applyMultiplier(request.limits, this.options.fallbackShare as number)
    const decision = await fallback.admit({ ...request, limits })
    if (decision.allowed && request.leaseId !== '') this.fallbackLeases.add(request.leaseId)
    return { ...decision, degraded: true }
  }

  release (keys: StoreKeys, leaseId: string): void {
    if (this.fallbackLeases.delete(leaseId)) this.fallback?.release(keys, leaseId)
    else this.inner.release(keys, leaseId)
  }

  async renewLeases (leases: ReadonlyArray<{ readonly keys: StoreKeys, readonly id: string }>): Promise<void> {
    if (this.fallback !== undefined) await this.fallback.renewLeases(leases.filter(l => this.fallbackLeases.has(l.id)))
    if (this.state === 'closed') await this.inner.renewLeases(leases.filter(l => !this.fallbackLeases.has(l.id)))
  }

  async usage (keys: StoreKeys): Promise<Usage> {
    return await this.inner.usage(keys)
  }

  async resetSubject (subjectBase: string): Promise<void> {
    await this.inner.resetSubject(subjectBase)
  }

  async close (): Promise<void> {
    // The store fails the decisions still waiting for it first (failMode, or the fallback, decides them).
    await this.inner.close()
    await this.fallback?.close()
  }

  /** @internal The store answered (called by Waiter). */
  answered (waiter: Waiter, decision: Decision): void {
    this.succeeded()
    waiter.sink.decided(decision)
  }

  /** @internal The store failed the decision (called by Waiter): the fallback decides, or the error stands. */
  refused (waiter: Waiter, err: unknown): void {
    this.withoutStore(waiter.request, waiter.sink, this.failed(err))
  }

  private succeeded (): void {
    if (this.state !== 'closed') this.options.onStateChange?.('closed', undefined)
    this.state = 'closed'
    this.failures = 0
  }

  /** Counts a failure (opening the breaker when due) and hands the error back to be thrown. */
  private failed (err: unknown): unknown {
    this.failures++
    if (this.state === 'half-open' || (this.state === 'closed' && this.failures >= this.options.breakerThreshold)) {
      if (this.state === 'closed') this.options.onStateChange?.('open', err)
      this.state = 'open'
      this.openedAt = Date.now()
    }
    return err
  }
}
