// Keeps Redis trouble away from the request path: circuit breakers that stop calling a failing
// store for a while (one per Cluster node, so a failing master degrades only the tenants it holds),
// and an optional local fallback limiter. (The deadline of each decision is the Redis store's: it is
// measured from the moment a call is sent, see SentCall in admit-batcher.ts.)
import type { StoreKeys } from '../keys.js'
import { MemoryStore, type MemoryStoreOptions } from './memory-store.js'
import { CircuitBreaker } from './circuit-breaker.js'
import { StoreUnavailableError } from './store-unavailable.js'
import { admitAsPromise, admitInto, type AdjustRequest, type Adjusted, type AdmitRequest, type Decision, type DecisionSink, type DirectAdmit, type RateLimitStore, type Usage, type UsageRecord } from './types.js'
import { applyMultiplier, scaleLimit } from '../tiers.js'
import type { UsageDescription } from './usage-descriptions.js'

export { StoreUnavailableError }

export interface ResilienceOptions {
  /** Consecutive failures that open a breaker. */
  breakerThreshold: number
  /** How long a breaker stays open before one probe is let through, in ms. */
  breakerCooldownMs: number
  /** Share of each limit the local fallback enforces on this instance (undefined: no fallback). */
  fallbackShare: number | undefined
  /** Reports when the store (on a Cluster: one node, named) fails and recovers (for logs). */
  onStateChange?: (state: 'open' | 'closed', cause: unknown, node: string) => void
}

/** A store that can say which Cluster node holds a request's keys ('' for a single Redis). */
type InnerStore = RateLimitStore & { readonly ready?: boolean, nodeOf?: (keys: StoreKeys) => string }

/** A decision waiting for the store: its outcome counts for its node's breaker before it reaches the sink. */
class Waiter implements DecisionSink {
  constructor (
    readonly request: AdmitRequest,
    readonly sink: DecisionSink,
    readonly breaker: CircuitBreaker,
    /** What the store does without the inner store's answer (the fallback, or the error). */
    private readonly withoutStore: (request: AdmitRequest, sink: DecisionSink, err: unknown) => void
  ) {}

  decided (decision: Decision): void {
    this.breaker.succeeded()
    this.sink.decided(decision)
  }

  failed (err: unknown): void {
    this.breaker.failed(err)
    this.withoutStore(this.request, this.sink, err)
  }
}

/** A lease the fallback granted: one per level it was taken at. */
function fallbackLease (keys: StoreKeys, leaseId: string): string {
  return leaseId + ' ' + keys.leases
}

/** Wraps a store; decisions it fails (or cannot make, the breaker open) are errors, or fallback decisions. */
export class ResilientStore implements RateLimitStore, DirectAdmit {
  readonly kind: 'redis' | 'memory'
  /** One breaker per Cluster node ('' for a single Redis). */
  private readonly breakers = new Map<string, CircuitBreaker>()
  /** The local fallback limiter, when there is one. */
  readonly fallback: MemoryStore | undefined
  /** Leases the fallback granted, by lease id and leases key (given back to it, not to the store). */
  private readonly fallbackLeases = new Set<string>()

  constructor (readonly inner: InnerStore, private readonly options: ResilienceOptions & { fallbackSettings?: MemoryStoreOptions }) {
    this.kind = inner.kind
    this.fallback = options.fallbackShare === undefined ? undefined : new MemoryStore(options.fallbackSettings)
  }

  /** The nodes whose breaker is not closed ('' for a single Redis), for health reports. */
  openNodes (): string[] {
    return [...this.breakers].filter(([, breaker]) => !breaker.closed).map(([node]) => node)
  }

  /** The breaker of the node that holds these keys. */
  private breakerFor (keys: StoreKeys): CircuitBreaker {
    const node = this.inner.nodeOf?.(keys) ?? ''
    let breaker = this.breakers.get(node)
    if (breaker === undefined) {
      const onStateChange = this.options.onStateChange
      breaker = new CircuitBreaker({
        threshold: this.options.breakerThreshold,
        cooldownMs: this.options.breakerCooldownMs,
        onStateChange: onStateChange === undefined ? undefined : (state, cause) => onStateChange(state, cause, node)
      })
      this.breakers.set(node, breaker)
    }
    return breaker
  }

  admit (request: AdmitRequest): Promise<Decision> {
    return admitAsPromise(this, request)
  }

  /** `admit` without a promise (the limiter's path): the outcome goes to `sink`. */
  admitTo (request: AdmitRequest, sink: DecisionSink): void {
    const breaker = this.breakerFor(request.keys)
    if (!breaker.allows()) return this.withoutStore(request, sink, new StoreUnavailableError('circuit-open'))
    if (this.inner.ready === false) {
      const err = new StoreUnavailableError('not-connected')
      breaker.failed(err)
      return this.withoutStore(request, sink, err)
    }
    admitInto(this.inner, request, new Waiter(request, sink, breaker, this.withoutStore))
  }

  /** The store could not decide: the local fallback does, when there is one; else the error stands. */
  private readonly withoutStore = (request: AdmitRequest, sink: DecisionSink, err: unknown): void => {
    if (this.fallback === undefined) sink.failed(err)
    else this.admitLocally(request).then(decision => sink.decided(decision), (fallbackErr: unknown) => sink.failed(fallbackErr))
  }

  /** Roughly enforced while the store is away: each instance holds its share of every limit. */
  private async admitLocally (request: AdmitRequest): Promise<Decision> {
    const fallback = this.fallback as MemoryStore
    const share = this.options.fallbackShare as number
    const limits = applyMultiplier(request.limits, share)
    const bucketQuota = request.bucketQuota === undefined ? undefined : scaleLimit(request.bucketQuota, share)
    const levels = request.levels?.map(level => ({ ...level, limits: applyMultiplier(level.limits, share) }))
    const decision = await fallback.admit({ ...request, limits, bucketQuota, levels })
    if (decision.allowed && request.leaseId !== '') {
      this.fallbackLeases.add(fallbackLease(request.keys, request.leaseId))
      for (const level of levels ?? []) this.fallbackLeases.add(fallbackLease(level.keys, request.leaseId))
    }
    return { ...decision, degraded: true }
  }

  release (keys: StoreKeys, leaseId: string): void {
    if (this.fallbackLeases.delete(fallbackLease(keys, leaseId))) this.fallback?.release(keys, leaseId)
    else this.inner.release(keys, leaseId)
  }

  async renewLeases (leases: ReadonlyArray<{ readonly keys: StoreKeys, readonly id: string }>): Promise<void> {
    const local = (l: { readonly keys: StoreKeys, readonly id: string }): boolean => this.fallbackLeases.has(fallbackLease(l.keys, l.id))
    if (this.fallback !== undefined) await this.fallback.renewLeases(leases.filter(local))
    // Not through a node whose breaker is open: that would only pay its deadline again.
    await this.inner.renewLeases(leases.filter(l => !local(l) && this.breakerFor(l.keys).closed))
  }

  /** Through the keys' node unless its breaker is open (then it fails at once: the caller decides). */
  adjust (request: AdjustRequest): Promise<Adjusted> {
    if (this.inner.adjust === undefined) return Promise.reject(new TypeError('this rate-limit store cannot adjust counts (it has no adjust method)'))
    if (!this.breakerFor(request.keys).closed) return Promise.reject(new StoreUnavailableError('circuit-open'))
    return this.inner.adjust(request)
  }

  async usage (keys: StoreKeys): Promise<Usage> {
    return await this.inner.usage(keys)
  }

  async resetSubject (subjectBase: string): Promise<void> {
    await this.inner.resetSubject(subjectBase)
  }

  describeUsage (keys: StoreKeys, description: UsageDescription): void {
    this.inner.describeUsage?.(keys, description)
  }

  /** The inner store's records, as they come (a report reads past the breakers: it is no request). */
  usageMonth (month: string, keyPrefix: string): AsyncIterable<UsageRecord> {
    if (this.inner.usageMonth === undefined) throw new TypeError('this rate-limit store cannot report usage (it has no usageMonth method)')
    return this.inner.usageMonth(month, keyPrefix)
  }

  async close (): Promise<void> {
    // The store fails the decisions still waiting for it first (failMode, or the fallback, decides them).
    await this.inner.close()
    await this.fallback?.close()
  }
}
