// Keeps Redis trouble away from the request path: a bounded wait for every decision, a circuit
// breaker that stops calling a failing store for a while, and an optional local fallback limiter.
import type { StoreKeys } from '../keys.js'
import { MemoryStore, type MemoryStoreOptions } from './memory-store.js'
import { admitAsPromise, admitInto, rethrowLater, type AdmitRequest, type Decision, type DecisionSink, type DirectAdmit, type RateLimitStore, type Usage } from './types.js'
import { applyMultiplier } from '../tiers.js'

/** Raised for decisions the store did not make in time, or not at all while the breaker is open. */
export class StoreUnavailableError extends Error {
  constructor (readonly why: 'timeout' | 'circuit-open' | 'not-connected', cause?: unknown) {
    super(`rate-limit store unavailable (${why})`, { cause })
    this.name = 'StoreUnavailableError'
  }
}

export interface ResilienceOptions {
  /** Longest a decision may wait for the store, in ms. */
  timeoutMs: number
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

/**
 * A decision waiting for the store, settled once: by the store's answer or by its deadline,
 * whichever comes first. It is the store's sink itself, so no closure or promise is made for it.
 */
class Waiter implements DecisionSink {
  constructor (
    private readonly owner: ResilientStore,
    readonly request: AdmitRequest,
    /** performance.now() time: monotonic, so a clock step never reorders deadlines. */
    readonly deadline: number,
    /**
     * Who hears the outcome; undefined once settled. Dropped at once, not when the waiter leaves the
     * queue: the sink holds the request, which should not outlive its response.
     */
    public sink: DecisionSink | undefined
  ) {}

  decided (decision: Decision): void {
    this.owner.answered(this, decision)
  }

  failed (err: unknown): void {
    this.owner.refused(this, err)
  }

  /** The sink, now and never again. */
  settle (): DecisionSink | undefined {
    const sink = this.sink
    this.sink = undefined
    return sink
  }
}

/** Deadlines are checked this often: a decision waits at most timeoutMs plus this. */
const DEADLINE_RESOLUTION_MS = 5

/** Wraps a store; decisions it cannot get in time are errors (or fallback decisions). */
export class ResilientStore implements RateLimitStore, DirectAdmit {
  readonly kind: 'redis' | 'memory'
  private state: BreakerState = 'closed'
  private failures = 0
  private openedAt = 0
  /** The local fallback limiter, when there is one. */
  readonly fallback: MemoryStore | undefined
  /** Leases the fallback granted (given back to it, not to the store). */
  private readonly fallbackLeases = new Set<string>()
  /** Waiters in deadline order (every deadline is now + timeoutMs); settled ones leave from the head. */
  private waiters: Waiter[] = []
  private firstWaiter = 0
  private deadlineTimer: NodeJS.Timeout | undefined

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
    const waiter = new Waiter(this, request, performance.now() + this.options.timeoutMs, sink)
    this.watch(waiter)
    admitInto(this.inner, request, waiter)
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
    clearInterval(this.deadlineTimer)
    this.deadlineTimer = undefined
    // Nothing will expire the decisions still waiting: they fail now (failMode decides).
    const waiting = this.waiters.slice(this.firstWaiter)
    this.waiters = []
    this.firstWaiter = 0
    for (const waiter of waiting) this.refused(waiter, new StoreUnavailableError('not-connected'))
    await this.fallback?.close()
    await this.inner.close()
  }

  /** The store answered. A waiter whose deadline passed has failed already: a lease granted late goes straight back. */
  answered (waiter: Waiter, decision: Decision): void {
    const sink = waiter.settle()
    if (sink === undefined) {
      if (decision.allowed && waiter.request.leaseId !== '') this.inner.release(waiter.request.keys, waiter.request.leaseId)
      return
    }
    this.succeeded()
    sink.decided(decision)
  }

  /** A waiter fails: the store failed it, its deadline passed, or the store closed. Once only. */
  refused (waiter: Waiter, err: unknown): void {
    const sink = waiter.settle()
    if (sink === undefined) return
    try {
      this.withoutStore(waiter.request, sink, this.failed(err))
    } catch (thrown) {
      rethrowLater(thrown) // one throwing sink must not leave the other waiters unanswered
    }
  }

  // One shared timer checks the deadlines, instead of a timer per request.
  private watch (waiter: Waiter): void {
    this.waiters.push(waiter)
    if (this.deadlineTimer === undefined) {
      this.deadlineTimer = setInterval(() => this.expireOverdue(), DEADLINE_RESOLUTION_MS)
      this.deadlineTimer.unref()
    }
  }

  /**
   * Fails the waiters whose deadline has passed. Deadlines come in the order waiters were made, so
   * only the head of the queue is looked at, and answered waiters leave from there too.
   */
  private expireOverdue (): void {
    const now = performance.now()
    const waiters = this.waiters
    let first = this.firstWaiter
    while (first < waiters.length) {
      const waiter = waiters[first]
      if (waiter.sink !== undefined) {
        if (waiter.deadline > now) break
        // Made only for a waiter that really fails: an error (and its stack) per answered request would cost more than the decision.
        this.refused(waiter, new StoreUnavailableError('timeout'))
      }
      first++
    }
    if (first === waiters.length) {
      // The timer stops itself once idle, not on every answer: a busy store pays no timer per request.
      this.waiters = []
      this.firstWaiter = 0
      clearInterval(this.deadlineTimer)
      this.deadlineTimer = undefined
    } else if (first > 1024 && first * 2 > waiters.length) {
      this.waiters = waiters.slice(first)
      this.firstWaiter = 0
    } else {
      this.firstWaiter = first
    }
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
