// Keeps Redis trouble away from the request path: a bounded wait for every decision, a circuit
// breaker that stops calling a failing store for a while, and an optional local fallback limiter.
import type { StoreKeys } from '../keys.js'
import { MemoryStore } from './memory-store.js'
import type { AdmitRequest, Decision, RateLimitStore, Usage, WindowSettings } from './types.js'
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

/** A decision waiting for the store: sent when made, settled by the store's answer or its deadline. */
class Waiter {
  readonly deadline: number
  readonly pending: Promise<Decision>

  constructor (
    owner: ResilientStore,
    readonly request: AdmitRequest,
    readonly resolve: (decision: Decision) => void,
    readonly reject: (err: unknown) => void
  ) {
    this.deadline = Date.now() + owner.timeoutMs
    this.pending = owner.inner.admit(request)
    this.pending.then(decision => owner.answered(this, decision), (err: unknown) => owner.refused(this, err))
  }
}

/** Deadlines are checked this often: a decision waits at most timeoutMs plus this. */
const DEADLINE_RESOLUTION_MS = 5

/** Wraps a store; decisions it cannot get in time are errors (or fallback decisions). */
export class ResilientStore implements RateLimitStore {
  readonly kind: 'redis' | 'memory'
  private state: BreakerState = 'closed'
  private failures = 0
  private openedAt = 0
  private readonly fallback: MemoryStore | undefined
  /** Leases the fallback granted (given back to it, not to the store). */
  private readonly fallbackLeases = new Set<string>()
  private readonly waiters = new Set<Waiter>()
  private deadlineTimer: NodeJS.Timeout | undefined

  constructor (readonly inner: RateLimitStore & { readonly ready?: boolean }, private readonly options: ResilienceOptions & { fallbackSettings?: WindowSettings }) {
    this.kind = inner.kind
    this.fallback = options.fallbackShare === undefined ? undefined : new MemoryStore(options.fallbackSettings)
  }

  /** Longest a decision may wait for the store, in ms. */
  get timeoutMs (): number {
    return this.options.timeoutMs
  }

  /** Whether the breaker is open (decisions skip the store). */
  get circuitOpen (): boolean {
    return this.state !== 'closed'
  }

  // Not async, like admitFromStore: on the request path every promise layer costs.
  admit (request: AdmitRequest): Promise<Decision> {
    const fromStore = this.admitFromStore(request)
    return this.fallback === undefined ? fromStore : fromStore.catch(async () => await this.admitLocally(request))
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
    await this.fallback?.close()
    await this.inner.close()
  }

  private admitFromStore (request: AdmitRequest): Promise<Decision> {
    if (this.state === 'open') {
      if (Date.now() - this.openedAt < this.options.breakerCooldownMs) return Promise.reject(new StoreUnavailableError('circuit-open'))
      this.state = 'half-open' // this request is the probe
    } else if (this.state === 'half-open') {
      return Promise.reject(new StoreUnavailableError('circuit-open')) // one probe at a time
    }
    if (this.inner.ready === false) return Promise.reject(this.failed(new StoreUnavailableError('not-connected')))
    return new Promise<Decision>((resolve, reject) => this.watch(new Waiter(this, request, resolve, reject)))
  }

  /** The store answered a waiter still watched: its decision stands. */
  answered (waiter: Waiter, decision: Decision): void {
    if (!this.waiters.delete(waiter)) return // already timed out
    this.succeeded()
    waiter.resolve(decision)
  }

  /** The store failed a waiter still watched. */
  refused (waiter: Waiter, err: unknown): void {
    if (!this.waiters.delete(waiter)) return
    waiter.reject(this.failed(err))
  }

  /** A waiter's deadline passed: it fails now, and a lease the store grants it later goes straight back. */
  private expire (waiter: Waiter): void {
    waiter.pending.then(late => { if (late.allowed && waiter.request.leaseId !== '') this.inner.release(waiter.request.keys, waiter.request.leaseId) }, () => {})
    waiter.reject(this.failed(new StoreUnavailableError('timeout')))
  }

  // One shared timer checks every deadline, instead of a timer per request.
  private watch (waiter: Waiter): void {
    this.waiters.add(waiter)
    if (this.deadlineTimer === undefined) {
      this.deadlineTimer = setInterval(() => this.expireOverdue(), DEADLINE_RESOLUTION_MS)
      this.deadlineTimer.unref()
    }
  }

  private expireOverdue (): void {
    // The timer stops itself once idle, not on every answer: a quiet store does not pay a timer
    // per request.
    if (this.waiters.size === 0) {
      clearInterval(this.deadlineTimer)
      this.deadlineTimer = undefined
      return
    }
    const now = Date.now()
    for (const waiter of this.waiters) {
      if (waiter.deadline > now) continue
      this.waiters.delete(waiter)
      this.expire(waiter)
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
