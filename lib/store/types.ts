// The store interface both implementations honour, and the decision they return.
import type { StoreKeys } from '../keys.js'
import type { TierLimits } from '../tiers.js'
import type { UsageDescription } from './usage-descriptions.js'

export type RejectReason = 'rate_limit_exceeded' | 'concurrent_limit_exceeded' | 'quota_exceeded'

/** Which level of limits a decision is about: the caller's own, its organization's, a shared route budget. */
export type Scope = 'tenant' | 'organization' | 'route'

/**
 * A level of limits above the request's own subject: its organization, or a shared route budget.
 * Decided together with the subject's limits, all or nothing: a request refused at any level counts
 * nowhere.
 */
export interface AdmitLevel {
  readonly scope: 'organization' | 'route'
  /** The level's shared counters (`counters` and `month` are one key) and its leases. */
  readonly keys: StoreKeys
  /** The level's limits; its `monthlyQuota` is counted in its own counters. */
  readonly limits: TierLimits
  /** An organization's id and tier, as its usage record and its quota alerts name it. */
  readonly id?: string
  readonly tier?: string | null
}

/** One request to decide. */
export interface AdmitRequest {
  readonly keys: StoreKeys
  /** How much the request counts against the windows and the month: a whole number >= 0 (0 counts nothing). */
  readonly cost: number
  /** `monthlyQuota` is the subject's, across all its buckets (counted in `keys.month`). */
  readonly limits: TierLimits
  /**
   * A monthly cap on this bucket alone, on top of the subject's quota (a route's own
   * `monthlyQuota`), counted in `keys.counters`. Absent or `Infinity`: none.
   */
  readonly bucketQuota?: number
  /** Identifies the concurrency lease this request takes (when concurrency is limited). */
  readonly leaseId: string
  /** Decide only: the decision an admission would get now, with nothing recorded and no lease taken. */
  readonly peek?: boolean
  /**
   * Keep the subject's month counts in a usage record that outlives the month (tenants; not
   * anonymous clients). Levels above it keep theirs when they count a month.
   */
  readonly keepUsage?: boolean
  /**
   * Levels above the subject, checked and taken in the same step (the lease `leaseId` is taken at
   * every level with a concurrency limit). On a single Redis one script call decides them all.
   */
  readonly levels?: readonly AdmitLevel[]
}

/** Which of a subject's counts a change after the fact applies to (where the amount was counted). */
export interface CountedIn {
  readonly minute: boolean
  readonly hour: boolean
  /** The subject's month (`keys.month`). */
  readonly month: boolean
  /** A route's own cap on its bucket's month (`keys.counters`). */
  readonly bucketMonth: boolean
}

/**
 * What an admission under these limits counts, as both stores count it: each limited window, the
 * subject's month (its quota, or a cap on its shared bucket) and a bucket's own month cap.
 */
export function countedIn (keys: StoreKeys, limits: TierLimits, bucketQuota: number): CountedIn {
  const shared = keys.month === keys.counters
  return {
    minute: limits.requestsPerMinute !== Infinity,
    hour: limits.requestsPerHour !== Infinity,
    month: limits.monthlyQuota !== Infinity || (bucketQuota !== Infinity && shared),
    bucketMonth: bucketQuota !== Infinity && !shared
  }
}

/** A change, after the fact, to what a subject counted: a cost settled after the response, a refund. */
export interface AdjustRequest {
  readonly keys: StoreKeys
  /** A whole number: > 0 charges, < 0 gives back (never below zero in any bucket or month). */
  readonly amount: number
  /**
   * The store time (`Decision.now`) at which the amount was reserved: only the buckets and the month
   * that held the reservation change (one that has left its window, no more). Absent: a refund of
   * what is counted now, newest buckets first.
   */
  readonly reservedAt?: number
  readonly counted: CountedIn
}

/** What an adjustment changed, signed, per count. */
export interface Adjusted {
  readonly now: number
  readonly minute: number
  readonly hour: number
  readonly month: number
  readonly bucketMonth: number
}

export interface WindowState {
  /** `Infinity` when unlimited. */
  readonly limit: number
  /** `Infinity` when unlimited. */
  readonly remaining: number
  /** Unix ms at which everything counted now has left the window (`now` when nothing is; the month's end for the quota). */
  readonly resetAt: number
}

/** A share of a monthly quota that an admission's count crossed (a quota alert to send). */
export interface Crossing {
  /** Whose count: the subject's (`tenant`, also for its buckets) or its organization's. */
  readonly scope: 'tenant' | 'organization'
  /** True: the bucket's own monthly cap; false: the subject's monthly quota. */
  readonly bucket: boolean
  readonly threshold: number
  /** The month count right after the admission. */
  readonly used: number
  readonly quota: number
}

/** One level's own state, as a decision over several levels reports it. */
export interface LevelState {
  readonly scope: Scope
  /** Why this level refuses; undefined when it would admit (the request may still be refused elsewhere). */
  readonly reason: RejectReason | undefined
  readonly minute: WindowState
  readonly hour: WindowState
  readonly month: WindowState
  readonly concurrent: { readonly limit: number, readonly inFlight: number }
}

export interface Decision {
  readonly allowed: boolean
  readonly reason: RejectReason | undefined
  /** On rejection: ms until this request would be admitted. 0 when admitted. */
  readonly retryAfterMs: number
  /** The store's clock (Redis TIME for the Redis store), in Unix ms. */
  readonly now: number
  readonly minute: WindowState
  readonly hour: WindowState
  readonly month: WindowState
  readonly concurrent: { readonly limit: number, readonly inFlight: number }
  /** True when a local fallback decided because the store was unavailable. */
  readonly degraded?: boolean
  /**
   * On a refusal over several levels, the level that refused (the one that frees last when several
   * do); absent on a refusal of a request without levels: its subject's own limits (`tenant`).
   */
  readonly scope?: Scope
  /**
   * Decided over several levels: each level's own state, the subject's first. The decision's own
   * windows and concurrency are then the tightest of the levels', each on its own.
   */
  readonly levels?: readonly LevelState[]
  /** The quota thresholds this admission crossed (absent: none; each crossing is reported once). */
  readonly crossings?: readonly Crossing[]
}

/** Tunables shared by both stores; they must agree between every instance sharing one store. */
export interface WindowSettings {
  /** Sub-buckets per window: capacity frees at most window/k late. */
  readonly bucketsPerWindow: number
  /** A lease that is never released (crashed process) frees itself after this many ms. */
  readonly leaseTtlMs: number
  /** Shares of a monthly quota whose crossing an admission reports (quota alerts); empty: none. */
  readonly alertThresholds?: readonly number[]
  /** Months a usage record outlives its month. Default 3. */
  readonly usageRetentionMonths?: number
}

/** Used amounts (not remaining) of one subject and bucket. */
export interface Usage {
  readonly now: number
  readonly minute: number
  readonly hour: number
  /** The subject's month, across all its buckets. */
  readonly month: number
  readonly inFlight: number
  readonly monthResetAt: number
}

/**
 * One line of a month's usage, as kept after the month ends (the hash `<subjectBase>usage:<yyyymm>`,
 * see docs/policies.md): a subject's month (`bucket` null), or a bucket's own month under a cap of
 * its own.
 */
export interface UsageRecord {
  readonly scope: 'tenant' | 'organization'
  /** The tenant's or the organization's id, as given (never the hashed form keys may hold). */
  readonly id: string
  /** The tier last seen that month; null when none was recorded. */
  readonly tier: string | null
  readonly bucket: string | null
  readonly used: number
  /** The monthly quota (or the bucket's cap) at the last admission; null: unlimited. */
  readonly quota: number | null
}

export const MINUTE_MS = 60_000
export const HOUR_MS = 3_600_000

/**
 * Where a store delivers one decision when asked without a promise (see DirectAdmit). A sink should
 * not throw; if it does, the store still answers every other request and the error surfaces on its
 * own, as an uncaught exception (see rethrowLater).
 */
export interface DecisionSink {
  decided (decision: Decision): void
  failed (err: unknown): void
}

/**
 * The promise-free form of `admit`, which the built-in stores also offer: the decision goes to
 * `sink`, exactly once (the memory store calls it before returning). The request path then pays no
 * promise per layer.
 */
export interface DirectAdmit {
  admitTo (request: AdmitRequest, sink: DecisionSink): void
}

export interface RateLimitStore {
  readonly kind: 'redis' | 'memory'
  /** Decides and, when admitted, records the request: one atomic step. */
  admit (request: AdmitRequest): Promise<Decision>
  /**
   * Charges or gives back part of what a subject counted, atomically. Optional for a custom store:
   * without it, settling costs and refunds are refused with an error saying so.
   */
  adjust? (request: AdjustRequest): Promise<Adjusted>
  /** Gives back a concurrency lease. Never throws and never needs awaiting. */
  release (keys: StoreKeys, leaseId: string): void
  /** Extends leases of requests still running by a full lifetime (never revives a released one). */
  renewLeases (leases: ReadonlyArray<{ readonly keys: StoreKeys, readonly id: string }>): Promise<void>
  /** What the keys' owner has used, read without changing anything. */
  usage (keys: StoreKeys): Promise<Usage>
  /**
   * Every usage record of one month (`month`: `yyyymm`, UTC) under `keyPrefix` (the plugin's
   * `keyPrefix`: the store does not know it), as they are read: memory stays bounded whatever the
   * number of subjects. Optional for a custom store: without it, usage reports are refused.
   */
  usageMonth? (month: string, keyPrefix: string): AsyncIterable<UsageRecord>
  /** Forgets every counter and lease under a key base (`subjectKeyPattern`): one subject, all buckets. */
  resetSubject (subjectBase: string): Promise<void>
  /** Frees what the store created (never a Redis client it was given). */
  close (): Promise<void>
  /**
   * Names the subject of `keys` in its usage record of the current month (its real id, scope and
   * tier), for usage reports. Optional; called once per subject and month, never awaited.
   */
  describeUsage? (keys: StoreKeys, description: UsageDescription): void
}

/**
 * Asks `store` for a decision that goes to `sink`: through `admitTo` where the store offers it (the
 * built-in ones do), else through `admit`'s promise (a custom store). A store that throws instead of
 * failing, or answers `admit` with a plain decision, is handled too.
 */
export function admitInto (store: RateLimitStore, request: AdmitRequest, sink: DecisionSink): void {
  try {
    if (typeof (store as Partial<DirectAdmit>).admitTo === 'function') (store as RateLimitStore & DirectAdmit).admitTo(request, sink)
    else Promise.resolve(store.admit(request)).then(decision => sink.decided(decision), (err: unknown) => sink.failed(err))
  } catch (err) {
    sink.failed(err)
  }
}

/** `admit` of a store whose own path is `admitTo`: the same decision, as a promise. */
export function admitAsPromise (store: DirectAdmit, request: AdmitRequest): Promise<Decision> {
  return new Promise<Decision>((resolve, reject) => store.admitTo(request, { decided: resolve, failed: reject }))
}

/**
 * For loops that answer many sinks (a batch's replies, the overdue deadlines): a sink that throws
 * must not leave the others unanswered, so its error is thrown again on its own, like a throwing
 * event listener.
 */
export function rethrowLater (err: unknown): void {
  queueMicrotask(() => { throw err })
}
