// The plugin's options: schema, defaults and normalisation into one frozen object.
import type { FastifyReply, FastifyRequest } from 'fastify'
import Type from 'typebox'
import { Compile } from 'typebox/compile'
import { InvalidOptionError } from './errors.js'
import { KEY_PREFIX_PATTERN } from './keys.js'
import type { RedisClient } from './store/lua-script.js'
import { DEFAULT_MAX_KEYS } from './store/memory-store.js'
import type { Decision, RateLimitStore } from './store/types.js'
import { anonymousClientKey } from './client-key.js'
import type { MetricsOptions } from './metrics.js'
import type { IetfDraft } from './headers.js'
import { DEFAULT_TIERS, infinityToNull, tierLimitsFrom, type TierLimits, type TierLimitsInput } from './tiers.js'
import { explain } from './validation.js'
import type { QuotaAlertEvent } from './alerts/alert-event.js'

/** Who a request belongs to, as the tenant extractor reports it. */
export interface TenantIdentity {
  tenantId: string
  /** Tier name; unknown names fall back to `defaultTier`. */
  tier?: string
  /**
   * The organization the tenant belongs to: its limits hold the sum of its tenants' traffic, decided
   * with the tenant's own (see docs/policies.md). A tenant's counters live under its organization.
   */
  organizationId?: string
  /** The organization's tier; without one, its stored tier, else it is held only by its override. */
  organizationTier?: string
}

export type TenantExtractor = (request: FastifyRequest) => TenantIdentity | null | undefined | Promise<TenantIdentity | null | undefined>

/** What the plugin knows about a limited request; also on `request.rateLimit`. */
export interface RateLimitContext {
  /** Tenant id, or the client key (IP) for anonymous requests. */
  readonly subject: string
  readonly anonymous: boolean
  readonly tier: string
  /** The tenant's organization, when the extractor reported one. */
  readonly organizationId: string | undefined
  /** The route's bucket, or undefined for the tenant's shared counters. */
  readonly bucket: string | undefined
  readonly cost: number
  readonly limits: TierLimits
  /** Undefined when the request bypassed the store (unlimited or blocked) or the store failed. */
  readonly decision: Decision | undefined
  /** Shadow mode: limits are counted and reported, never enforced. */
  readonly shadow: boolean
  /**
   * Sets the request's real cost (`cost` was a reservation): when the request is over, the difference
   * is charged or given back in one store call, in the buckets that held the reservation. A charge
   * may take a window past its limit (the tenant is refused until that debt has left it). Call it
   * once, before the response is sent; throws InvalidSettleError otherwise or for a cost that is not
   * a whole number from 0 to 1,000,000.
   */
  settle (finalCost: number): void
}

export type HookName = 'onRequest' | 'preParsing' | 'preValidation' | 'preHandler'
export type ErrorResponseBuilder = (request: FastifyRequest, context: RateLimitContext & { decision: Decision }) => unknown
export type ExceededListener = (request: FastifyRequest, reply: FastifyReply, context: RateLimitContext & { decision: Decision }) => void

export interface RateLimitingOptions {
  /**
   * ioredis client or Cluster (yours: never closed by the plugin), or a `redis://` / `rediss://` URL
   * for a client the plugin creates, watches and closes. A URL boots while Redis is down.
   * Default: `fastify.redis` when registered before the plugin, else the memory store (with a warning).
   */
  redis?: RedisClient | string
  /** A ready store instance, or `'memory'` to choose the in-memory store on purpose; wins over `redis`. */
  store?: RateLimitStore | 'memory'
  /** Who is calling. Default: nobody known, so every request is `anonymous` keyed by `request.ip`. */
  tenantExtractor?: TenantExtractor
  /** Tier name → limits, merged over the default tiers (replaces or adds tiers). */
  tiers?: Record<string, TierLimitsInput>
  /** Picks the environment multiplier of dynamic policies. Default `NODE_ENV`, else `production`. */
  environment?: string
  /** Prefix of every Redis key. Default `maestro-rl`. */
  keyPrefix?: string
  /** Tier used when a tenant reports an unknown tier or none. Default `starter`. */
  defaultTier?: string
  /** Tier of requests without a tenant. Default `anonymous`. */
  anonymousTier?: string
  /**
   * Key of anonymous clients. Default `request.ip` (so `trustProxy` decides about X-Forwarded-For), IPv6
   * by network; the peer's address when `request.ip` is not an address (a forged X-Forwarded-For entry).
   */
  anonymousKey?: (request: FastifyRequest) => string
  /** Limit every route (true, default) or only routes with `config.rateLimit`. */
  global?: boolean
  /** The hook the limiter runs in. Default `onRequest`. */
  hook?: HookName
  /**
   * X-RateLimit-* headers: `true` (default) one pair per window and for concurrency, plus the reset;
   * `'compact'` only X-RateLimit-Limit / -Remaining / -Reset of the window closest to its limit;
   * `false` none.
   */
  headers?: boolean | 'compact'
  /**
   * Also send the IETF `RateLimit-Policy` / `RateLimit` fields, with the values of
   * draft-ietf-httpapi-ratelimit-headers-10 or -11. `true` is `'draft-10'` (what it meant before
   * -11 existed). Default false.
   */
  ietfHeaders?: boolean | IetfDraft
  /** Sub-buckets per sliding window; capacity frees at most window/k late. Default 20. */
  bucketsPerWindow?: number
  /** A concurrency lease that is never released frees itself after this. Default 60 s. */
  leaseTtlSeconds?: number
  /** Builds the body of a 429 response. */
  errorResponseBuilder?: ErrorResponseBuilder
  /** Called for every rejected request (logging, auditing). */
  onExceeded?: ExceededListener
  /** What happens when the store fails: admit (`open`, default) or answer 503 (`closed`). */
  failMode?: 'open' | 'closed'
  /** Full reload of dynamic policies, a safety net behind pub/sub notices. Default 30 s. */
  policyReloadSeconds?: number
  /** Prometheus metrics (needs prom-client); `false` turns them off. */
  metrics?: MetricsOptions | false
  /** Also limit requests that match no route (404s), so scanners are held to limits. Default true. */
  limitNotFound?: boolean
  /** Longest a decision may wait for Redis, in ms; past it the store counts as failed. Default 100. */
  storeTimeoutMs?: number
  /** Consecutive store failures that open the circuit breaker (no Redis calls for a while). Default 5. */
  breakerThreshold?: number
  /** How long the open breaker skips Redis before one probe request, in seconds. Default 1. */
  breakerCooldownSeconds?: number
  /**
   * While Redis is unavailable, enforce limits with an in-memory limiter on each instance instead of
   * `failMode` alone. `share` scales every limit per instance (e.g. 1/3 with three instances). Default off.
   */
  localFallback?: boolean | { share?: number }
  /** Fail registration when Redis does not answer at boot (default: boot, and fail open/closed until it does). */
  requireStoreAtBoot?: boolean
  /** What a throwing, garbage-returning or too slow tenant extractor means. Default `anonymous`. */
  onExtractorError?: 'anonymous' | 'unauthorized' | 'error'
  /** Longest the tenant extractor may take, in ms. Default 1000. */
  extractorTimeoutMs?: number
  /** IPv6 clients are keyed by this prefix length (their network), IPv4 by address. Default 64. */
  ipv6Subnet?: number
  /**
   * Most counters (one per subject and bucket) the memory store and the local fallback keep; past it
   * the least recently used are forgotten and start afresh. Default 100,000 (about 100 MB).
   */
  memoryMaxKeys?: number
  /**
   * Quota alerts: an event when an admission takes a tenant's (or an organization's, or a bucket's
   * own) month count across a share of its quota, once per subject, bucket, month and threshold.
   * `false` turns them off. Default on, with the default thresholds and stream.
   */
  quotaAlerts?: QuotaAlertsOptions | false
  /** Months a tenant's month counts stay readable (usage reports) after the month ends. Default 3. */
  usageRetentionMonths?: number
}

export interface QuotaAlertsOptions {
  /** Shares of the monthly quota, each in (0, 1], at most 4 decimals. Default `[0.8, 0.9, 1.0]`. */
  thresholds?: number[]
  /** Called with each event on the instance that saw the crossing (not awaited; a throw is logged). */
  onAlert?: (event: QuotaAlertEvent) => void
  /**
   * The Redis Stream events are appended to (Redis store only): `key` default `<keyPrefix>:events`,
   * trimmed to about `maxLength` entries (default 100,000). `false`: no stream, onAlert only.
   */
  stream?: false | { key?: string, maxLength?: number }
  /**
   * How often the instances look for events whose append did not happen, in seconds (one instance a
   * period; it reads every usage record of this month and the last). Default 300.
   */
  sweepSeconds?: number
}

const TIER_NAME = /^[A-Za-z0-9_.-]{1,64}$/

const Limit = Type.Union([Type.Integer({ minimum: 0 }), Type.Null()])
export const TierLimitsSchema = Type.Object({
  requestsPerMinute: Limit,
  requestsPerHour: Limit,
  concurrentRequests: Limit,
  monthlyQuota: Limit
}, { additionalProperties: false })
export const PartialTierLimitsSchema = Type.Partial(TierLimitsSchema, { additionalProperties: false })

const AnyFunction = Type.Function([], Type.Unknown())
const OptionsSchema = Type.Object({
  redis: Type.Optional(Type.Union([Type.Object({}), Type.String({ minLength: 1 })])),
  store: Type.Optional(Type.Union([Type.Object({}), Type.Literal('memory')])),
  tenantExtractor: Type.Optional(AnyFunction),
  tiers: Type.Optional(Type.Record(Type.String(), TierLimitsSchema)),
  environment: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  keyPrefix: Type.Optional(Type.String({ pattern: KEY_PREFIX_PATTERN })),
  defaultTier: Type.Optional(Type.String({ pattern: TIER_NAME.source })),
  anonymousTier: Type.Optional(Type.String({ pattern: TIER_NAME.source })),
  anonymousKey: Type.Optional(AnyFunction),
  global: Type.Optional(Type.Boolean()),
  hook: Type.Optional(Type.Union([Type.Literal('onRequest'), Type.Literal('preParsing'), Type.Literal('preValidation'), Type.Literal('preHandler')])),
  headers: Type.Optional(Type.Union([Type.Boolean(), Type.Literal('compact')])),
  ietfHeaders: Type.Optional(Type.Union([Type.Boolean(), Type.Literal('draft-10'), Type.Literal('draft-11')])),
  bucketsPerWindow: Type.Optional(Type.Integer({ minimum: 1, maximum: 60 })),
  // At least 10 ms: a lease must outlive the round trip that takes it, and is renewed every third of it.
  leaseTtlSeconds: Type.Optional(Type.Number({ minimum: 0.01, maximum: 86_400 })),
  errorResponseBuilder: Type.Optional(AnyFunction),
  onExceeded: Type.Optional(AnyFunction),
  failMode: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('closed')])),
  policyReloadSeconds: Type.Optional(Type.Number({ minimum: 1, maximum: 86_400 })),
  metrics: Type.Optional(Type.Union([Type.Literal(false), Type.Object({
    registry: Type.Optional(Type.Object({})),
    prefix: Type.Optional(Type.String({ pattern: '^[a-zA-Z_:][a-zA-Z0-9_:]*$' })),
    route: Type.Optional(Type.Union([Type.Boolean(), Type.String({ pattern: '^/' })])),
    tenantLabel: Type.Optional(Type.Union([Type.Literal('tenant'), Type.Literal('tier')])),
    maxTenantLabels: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
    nearLimitRatio: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    latencyBuckets: Type.Optional(Type.Array(Type.Number({ exclusiveMinimum: 0 }), { minItems: 1 }))
  }, { additionalProperties: false })])),
  limitNotFound: Type.Optional(Type.Boolean()),
  storeTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000 })),
  breakerThreshold: Type.Optional(Type.Integer({ minimum: 1, maximum: 1_000_000 })),
  breakerCooldownSeconds: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 3600 })),
  localFallback: Type.Optional(Type.Union([Type.Boolean(), Type.Object({
    share: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 }))
  }, { additionalProperties: false })])),
  requireStoreAtBoot: Type.Optional(Type.Boolean()),
  onExtractorError: Type.Optional(Type.Union([Type.Literal('anonymous'), Type.Literal('unauthorized'), Type.Literal('error')])),
  extractorTimeoutMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 60_000 })),
  ipv6Subnet: Type.Optional(Type.Integer({ minimum: 1, maximum: 128 })),
  memoryMaxKeys: Type.Optional(Type.Integer({ minimum: 1 })),
  quotaAlerts: Type.Optional(Type.Union([Type.Literal(false), Type.Object({
    thresholds: Type.Optional(Type.Array(Type.Number({ exclusiveMinimum: 0, maximum: 1 }), { minItems: 1, maxItems: 10, uniqueItems: true })),
    onAlert: Type.Optional(AnyFunction),
    stream: Type.Optional(Type.Union([Type.Literal(false), Type.Object({
      key: Type.Optional(Type.String({ minLength: 1, maxLength: 256 })),
      maxLength: Type.Optional(Type.Integer({ minimum: 1 }))
    }, { additionalProperties: false })])),
    sweepSeconds: Type.Optional(Type.Number({ minimum: 1, maximum: 86_400 }))
  }, { additionalProperties: false })])),
  usageRetentionMonths: Type.Optional(Type.Integer({ minimum: 0, maximum: 120 }))
}, { additionalProperties: false })
const checkOptions = Compile(OptionsSchema)

/** Options after validation and defaults; frozen. */
export interface ResolvedOptions {
  readonly redis: RedisClient | undefined
  /** The `redis` option when it is a URL: the plugin creates (and closes) that client. */
  readonly redisUrl: string | undefined
  readonly store: RateLimitStore | 'memory' | undefined
  readonly tenantExtractor: TenantExtractor | undefined
  readonly tiers: ReadonlyMap<string, TierLimits>
  readonly environment: string
  readonly keyPrefix: string
  readonly defaultTier: string
  readonly anonymousTier: string
  readonly anonymousKey: (request: FastifyRequest) => string
  /** IPv6 clients are keyed by their network of this many bits. */
  readonly ipv6Subnet: number
  readonly global: boolean
  readonly hook: HookName
  readonly headers: boolean | 'compact'
  /** The draft the IETF fields follow, or false when they are off. */
  readonly ietfHeaders: IetfDraft | false
  readonly bucketsPerWindow: number
  readonly leaseTtlMs: number
  readonly errorResponseBuilder: ErrorResponseBuilder | undefined
  readonly onExceeded: ExceededListener | undefined
  readonly failMode: 'open' | 'closed'
  readonly policyReloadSeconds: number
  readonly metrics: MetricsOptions | false | undefined
  readonly limitNotFound: boolean
  readonly storeTimeoutMs: number
  readonly breakerThreshold: number
  readonly breakerCooldownMs: number
  /** Share of each limit the local fallback holds; undefined: no fallback. */
  readonly fallbackShare: number | undefined
  readonly requireStoreAtBoot: boolean
  readonly onExtractorError: 'anonymous' | 'unauthorized' | 'error'
  readonly extractorTimeoutMs: number
  readonly memoryMaxKeys: number
  /** Quota alerts as resolved; false when off. */
  readonly quotaAlerts: false | {
    readonly thresholds: readonly number[]
    readonly onAlert: ((event: QuotaAlertEvent) => void) | undefined
    /** undefined: no stream. */
    readonly streamKey: string | undefined
    readonly maxLength: number
    readonly sweepMs: number
  }
  readonly usageRetentionMonths: number
}

const anonymousKeyByNetwork = (ipv6Subnet: number) => (request: FastifyRequest): string =>
  anonymousClientKey(request.ip, request.socket.remoteAddress, ipv6Subnet)

/** Validates options and fills in defaults. Throws InvalidOptionError naming the field. */
export function resolveOptions (input: RateLimitingOptions | undefined): ResolvedOptions {
  // Fastify's own register options (prefix, logLevel, logSerializers) ride along; they are not ours.
  const { prefix: _p, logLevel: _l, logSerializers: _s, ...raw } = (input ?? {}) as RateLimitingOptions & Record<string, unknown>
  const tiersInput = raw.tiers === undefined || raw.tiers === null || typeof raw.tiers !== 'object'
    ? raw.tiers
    : Object.fromEntries(Object.entries(raw.tiers).map(([name, limits]) => [name, infinityToNull(limits)]))
  const problem = explain(checkOptions, { ...raw, tiers: tiersInput, ...stripped(raw) }, 'options')
  if (problem !== undefined) throw new InvalidOptionError(problem)

  const tiers = new Map<string, TierLimits>(Object.entries(DEFAULT_TIERS))
  for (const [name, limits] of Object.entries(tiersInput ?? {})) {
    if (!TIER_NAME.test(name)) throw new InvalidOptionError(`options.tiers: tier name ${JSON.stringify(name)} must match ${TIER_NAME}`)
    tiers.set(name, tierLimitsFrom(limits as TierLimitsInput))
  }
  const defaultTier = raw.defaultTier ?? 'starter'
  const anonymousTier = raw.anonymousTier ?? 'anonymous'
  if (!tiers.has(defaultTier)) throw new InvalidOptionError(`options.defaultTier names unknown tier ${defaultTier}`)
  if (!tiers.has(anonymousTier)) throw new InvalidOptionError(`options.anonymousTier names unknown tier ${anonymousTier}`)
  const redisUrl = typeof raw.redis === 'string' ? checkRedisUrl(raw.redis) : undefined
  if (raw.redis !== undefined && redisUrl === undefined && typeof (raw.redis as { evalsha?: unknown }).evalsha !== 'function') {
    throw new InvalidOptionError('options.redis must be an ioredis client or Cluster, or a redis:// or rediss:// URL')
  }
  if (raw.store !== undefined && raw.store !== 'memory' && typeof (raw.store as { admit?: unknown }).admit !== 'function') {
    throw new InvalidOptionError('options.store must be \'memory\' or implement RateLimitStore (admit, release, close)')
  }

  return Object.freeze({
    redis: redisUrl === undefined ? raw.redis as RedisClient | undefined : undefined,
    redisUrl,
    store: raw.store,
    tenantExtractor: raw.tenantExtractor,
    tiers,
    environment: raw.environment ?? (process.env.NODE_ENV !== undefined && process.env.NODE_ENV !== '' ? process.env.NODE_ENV : 'production'),
    keyPrefix: raw.keyPrefix ?? 'maestro-rl',
    defaultTier,
    anonymousTier,
    anonymousKey: raw.anonymousKey ?? anonymousKeyByNetwork(raw.ipv6Subnet ?? 64),
    ipv6Subnet: raw.ipv6Subnet ?? 64,
    global: raw.global ?? true,
    hook: raw.hook ?? 'onRequest',
    headers: raw.headers ?? true,
    ietfHeaders: raw.ietfHeaders === true ? 'draft-10' : raw.ietfHeaders ?? false,
    bucketsPerWindow: raw.bucketsPerWindow ?? 20,
    leaseTtlMs: Math.round((raw.leaseTtlSeconds ?? 60) * 1000),
    errorResponseBuilder: raw.errorResponseBuilder,
    onExceeded: raw.onExceeded,
    failMode: raw.failMode ?? 'open',
    policyReloadSeconds: raw.policyReloadSeconds ?? 30,
    metrics: raw.metrics,
    limitNotFound: raw.limitNotFound ?? true,
    storeTimeoutMs: raw.storeTimeoutMs ?? 100,
    breakerThreshold: raw.breakerThreshold ?? 5,
    breakerCooldownMs: Math.round((raw.breakerCooldownSeconds ?? 1) * 1000),
    fallbackShare: raw.localFallback === undefined || raw.localFallback === false ? undefined : raw.localFallback === true ? 1 : raw.localFallback.share ?? 1,
    requireStoreAtBoot: raw.requireStoreAtBoot ?? false,
    onExtractorError: raw.onExtractorError ?? 'anonymous',
    extractorTimeoutMs: raw.extractorTimeoutMs ?? 1000,
    memoryMaxKeys: raw.memoryMaxKeys ?? DEFAULT_MAX_KEYS,
    quotaAlerts: resolveQuotaAlerts(raw.quotaAlerts, raw.keyPrefix ?? 'maestro-rl'),
    usageRetentionMonths: raw.usageRetentionMonths ?? 3
  })
}

function resolveQuotaAlerts (input: QuotaAlertsOptions | false | undefined, keyPrefix: string): ResolvedOptions['quotaAlerts'] {
  if (input === false) return false
  // A threshold names a field and an event id in Redis and in JavaScript alike: 4 decimals at most.
  for (const t of input?.thresholds ?? []) {
    if (Number(t.toFixed(4)) !== t) throw new InvalidOptionError(`options.quotaAlerts.thresholds: ${t} has more than 4 decimals`)
  }
  const stream = input?.stream
  return Object.freeze({
    // In increasing order: the script and the events list crossings in this order.
    thresholds: Object.freeze([...(input?.thresholds ?? [0.8, 0.9, 1.0])].sort((a, b) => a - b)),
    onAlert: input?.onAlert,
    streamKey: stream === false ? undefined : stream?.key ?? `${keyPrefix}:events`,
    maxLength: stream === false ? 0 : stream?.maxLength ?? 100_000,
    sweepMs: Math.round((input?.sweepSeconds ?? 300) * 1000)
  })
}

/** A URL for the plugin's own client. Never echoed in a message: it may hold a password. */
function checkRedisUrl (value: string): string {
  let protocol: string
  try {
    protocol = new URL(value).protocol
  } catch {
    throw new InvalidOptionError('options.redis must be a redis:// or rediss:// URL (the value does not parse as a URL, and is not shown: it may hold a password)')
  }
  if (protocol !== 'redis:' && protocol !== 'rediss:') throw new InvalidOptionError(`options.redis must be a redis:// or rediss:// URL, not ${protocol}`)
  return value
}

/** Client objects are checked by shape, not walked by the schema (they are large and cyclic). */
function stripped (raw: RateLimitingOptions): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  if (raw.redis !== undefined) out.redis = typeof raw.redis === 'object' && raw.redis !== null ? {} : raw.redis
  if (raw.store !== undefined) out.store = typeof raw.store === 'object' && raw.store !== null ? {} : raw.store
  if (raw.metrics !== undefined && raw.metrics !== false && raw.metrics?.registry !== undefined) {
    out.metrics = { ...raw.metrics, registry: typeof raw.metrics.registry === 'object' && raw.metrics.registry !== null ? {} : raw.metrics.registry }
  }
  return out
}
