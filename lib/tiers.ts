// Tier definitions and the arithmetic that turns them into the limits one request is held to.
// Public input uses `null` (or `Infinity`) for "unlimited"; internally every unlimited value is
// `Infinity`, and the stores receive -1.

/** A limit as users write it: a whole number ≥ 0, or `null` / `Infinity` for unlimited. */
export type LimitInput = number | null

/** The four limits of a tier, as users write them. */
export interface TierLimitsInput {
  requestsPerMinute: LimitInput
  requestsPerHour: LimitInput
  concurrentRequests: LimitInput
  monthlyQuota: LimitInput
}

/** The same four limits with unlimited values as `Infinity`. */
export interface TierLimits {
  readonly requestsPerMinute: number
  readonly requestsPerHour: number
  readonly concurrentRequests: number
  readonly monthlyQuota: number
}

export const LIMIT_FIELDS = ['requestsPerMinute', 'requestsPerHour', 'concurrentRequests', 'monthlyQuota'] as const
export type LimitField = typeof LIMIT_FIELDS[number]

export const UNLIMITED_TIER: TierLimits = Object.freeze({
  requestsPerMinute: Infinity,
  requestsPerHour: Infinity,
  concurrentRequests: Infinity,
  monthlyQuota: Infinity
})

/** The product's default tiers. `platform_admin` is unlimited and never touches the store. */
export const DEFAULT_TIERS: Readonly<Record<string, TierLimits>> = Object.freeze({
  anonymous: Object.freeze({ requestsPerMinute: 5, requestsPerHour: 50, concurrentRequests: 5, monthlyQuota: 1_000 }),
  starter: Object.freeze({ requestsPerMinute: 10, requestsPerHour: 100, concurrentRequests: 10, monthlyQuota: 10_000 }),
  professional: Object.freeze({ requestsPerMinute: 50, requestsPerHour: 1_000, concurrentRequests: 50, monthlyQuota: 100_000 }),
  enterprise: Object.freeze({ requestsPerMinute: 500, requestsPerHour: 10_000, concurrentRequests: 200, monthlyQuota: 1_000_000 }),
  platform_admin: UNLIMITED_TIER
})

export function toLimit (value: LimitInput | undefined): number {
  return value === null || value === undefined ? Infinity : value
}

/** Normalises user input (null → Infinity) into a frozen TierLimits. */
export function tierLimitsFrom (input: TierLimitsInput): TierLimits {
  return Object.freeze({
    requestsPerMinute: toLimit(input.requestsPerMinute),
    requestsPerHour: toLimit(input.requestsPerHour),
    concurrentRequests: toLimit(input.concurrentRequests),
    monthlyQuota: toLimit(input.monthlyQuota)
  })
}

/** Field-by-field overlay: every field present in `patch` replaces the one in `base`. */
export function overlayLimits (base: TierLimits, patch: Partial<TierLimitsInput> | undefined): TierLimits {
  if (patch === undefined) return base
  const out: Record<LimitField, number> = { ...base }
  for (const field of LIMIT_FIELDS) {
    if (field in patch) out[field] = toLimit(patch[field])
  }
  return Object.freeze(out)
}

/** True when a request held to these limits needs no store call at all. */
export function isUnlimited (limits: TierLimits): boolean {
  return limits.requestsPerMinute === Infinity && limits.requestsPerHour === Infinity &&
    limits.concurrentRequests === Infinity && limits.monthlyQuota === Infinity
}

/** Converts `Infinity` into the JSON-safe `null` (for documents and admin output). */
export function limitsToJSON (limits: TierLimits): TierLimitsInput {
  const out = {} as TierLimitsInput
  for (const field of LIMIT_FIELDS) out[field] = limits[field] === Infinity ? null : limits[field]
  return out
}

/** Replaces `Infinity` with `null` in a shallow object so it can be validated as JSON. */
export function infinityToNull<T extends object> (input: T): T {
  if (input === null || typeof input !== 'object') return input
  let copy: Record<string, unknown> | undefined
  for (const [key, value] of Object.entries(input)) {
    if (value === Infinity) {
      copy ??= { ...input as Record<string, unknown> }
      copy[key] = null
    }
  }
  return (copy ?? input) as T
}

/** One limit × multiplier, rounded down, never below 1; 0 and unlimited stay as they are. */
export function scaleLimit (n: number, multiplier: number): number {
  return n === Infinity || n === 0 || multiplier === 1 ? n : Math.max(1, Math.floor(n * multiplier))
}

/** Every limit × multiplier (scaleLimit). */
export function applyMultiplier (limits: TierLimits, multiplier: number): TierLimits {
  if (multiplier === 1) return limits
  return Object.freeze({
    requestsPerMinute: scaleLimit(limits.requestsPerMinute, multiplier),
    requestsPerHour: scaleLimit(limits.requestsPerHour, multiplier),
    concurrentRequests: scaleLimit(limits.concurrentRequests, multiplier),
    monthlyQuota: scaleLimit(limits.monthlyQuota, multiplier)
  })
}
