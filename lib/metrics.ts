// Prometheus metrics (prom-client, an optional peer dependency). Without prom-client, or with
// `metrics: false`, the limiter records nothing and nothing breaks.
import type { FastifyBaseLogger } from 'fastify'
import { TwoKeyCache } from './bounded-cache.js'
import { collectTallies, tallyFor, type Tally } from './metric-tally.js'
import type { Decision, Scope } from './store/types.js'

/** The part of a prom-client Registry this plugin uses (any prom-client Registry fits). */
export interface MetricsRegistry {
  metrics (): Promise<string>
  readonly contentType: string
  getSingleMetric (name: string): unknown
  registerMetric (metric: never): void
}

export interface MetricsOptions {
  /** Registry to register in. Default: prom-client's global registry. */
  registry?: MetricsRegistry
  /** Prepended to every metric name (e.g. `gateway_`). Default none. */
  prefix?: string
  /** Serve the registry at GET /metrics (`true`) or at the given path. Default off. */
  route?: boolean | string
  /** `tenant`: one label value per tenant (capped); `tier`: the tenant label stays empty. Default `tenant`. */
  tenantLabel?: 'tenant' | 'tier'
  /** Distinct tenant label values; later tenants are counted as `other`. Default 100. */
  maxTenantLabels?: number
  /** An admitted request above this share of a limit counts as near the limit. Default 0.8. */
  nearLimitRatio?: number
  /** Histogram buckets (seconds) of the decision latency. */
  latencyBuckets?: number[]
}

export type RequestStatus = 'allowed' | 'rejected' | 'bypassed' | 'error' | 'shadow'
export type RejectionReason = 'rate_limit_exceeded' | 'concurrent_limit_exceeded' | 'quota_exceeded' | 'blocked'
export type NearLimitWindow = 'minute' | 'hour' | 'month'

/** What the limiter (and the policies it reads) records. Every method is cheap and never throws. */
export interface LimiterMetrics {
  readonly enabled: boolean
  readonly nearLimitRatio: number
  /** The metrics of one endpoint (a route pattern); the limiter resolves it once per route. */
  endpoint (endpoint: string): EndpointMetrics
  decision (seconds: number, store: string): void
  storeError (store: string): void
  failDecision (mode: 'open' | 'closed'): void
  leaseTaken (tier: string): void
  leaseReleased (tier: string): void
  /** A stored policy entry was skipped: it does not fit its schema. */
  invalidPolicyEntry (): void
}

export interface EndpointMetrics {
  /**
   * The series of one subject and tier on this endpoint, found with two map lookups. Its tenant
   * label is `anonymous`, the tenant id, `other` past the cap, or '' in tier mode.
   */
  series (subject: string, anonymous: boolean, tier: string): RequestSeries
}

/** Everything recorded about one request, with the label values already resolved. */
export interface RequestSeries {
  request (status: RequestStatus): void
  /** `scope`: the level that refused (`tenant` for the subject's own limits and for blocks). */
  rejection (reason: RejectionReason, scope?: Scope): void
  nearLimit (window: NearLimitWindow): void
  quotaUsed (ratio: number): void
}

const noop = (): void => {}
const NO_SERIES: RequestSeries = { request: noop, rejection: noop, nearLimit: noop, quotaUsed: noop }
const NO_ENDPOINT: EndpointMetrics = { series: () => NO_SERIES }
export const NO_METRICS: LimiterMetrics = {
  enabled: false,
  nearLimitRatio: 1,
  endpoint: () => NO_ENDPOINT,
  decision: noop,
  storeError: noop,
  failDecision: noop,
  leaseTaken: noop,
  leaseReleased: noop,
  invalidPolicyEntry: noop
}

/** Endpoint label of requests that matched no route. */
export const UNMATCHED_ENDPOINT = 'unmatched'

type PromClient = typeof import('prom-client')

/** Loads prom-client if it is installed. */
async function loadPromClient (): Promise<PromClient | undefined> {
  try {
    return await import('prom-client')
  } catch {
    return undefined
  }
}

export async function createMetrics (options: MetricsOptions | false | undefined, log: FastifyBaseLogger): Promise<{ metrics: LimiterMetrics, registry: MetricsRegistry | undefined }> {
  if (options === false) return { metrics: NO_METRICS, registry: undefined }
  const prom = await loadPromClient()
  if (prom === undefined) {
    if (options !== undefined) log.warn('rate limiting: metrics requested but prom-client is not installed; metrics are off')
    return { metrics: NO_METRICS, registry: undefined }
  }
  const opts = options ?? {}
  const registry = (opts.registry ?? prom.register) as unknown as import('prom-client').Registry
  const prefix = opts.prefix ?? ''
  // Reuse metrics already in the registry (several instances or plugins in one process).
  const reuse = <T>(name: string, make: () => T): T => (registry.getSingleMetric(prefix + name) as T | undefined) ?? make()
  const labels = ['tenant', 'tier', 'endpoint']
  // Counted per request, so tallied (lib/metric-tally.ts): handed to prom-client when it is read.
  const requests = reuse('rate_limit_requests_total', () => new prom.Counter({
    name: prefix + 'rate_limit_requests_total', help: 'Requests seen by the rate limiter, by outcome.', labelNames: [...labels, 'status'], registers: [registry], collect: collectTallies
  }))
  const rejections = reuse('rate_limit_rejections_total', () => new prom.Counter({
    name: prefix + 'rate_limit_rejections_total', help: 'Requests refused by the rate limiter, by reason and by the level that refused.', labelNames: [...labels, 'reason', 'scope'], registers: [registry], collect: collectTallies
  }))
  const latency = reuse('rate_limit_decision_duration_seconds', () => new prom.Histogram({
    name: prefix + 'rate_limit_decision_duration_seconds',
    help: 'Time the limiter took to decide one request (policy lookup and the store round trip).',
    labelNames: ['store'],
    buckets: opts.latencyBuckets ?? [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25],
    registers: [registry]
  }))
  const storeErrors = reuse('rate_limit_store_errors_total', () => new prom.Counter({
    name: prefix + 'rate_limit_store_errors_total', help: 'Decisions the store did not make: calls that failed or timed out, and calls skipped while a circuit breaker was open.', labelNames: ['store'], registers: [registry]
  }))
  const failDecisions = reuse('rate_limit_fail_decisions_total', () => new prom.Counter({
    name: prefix + 'rate_limit_fail_decisions_total', help: 'Requests the store did not decide and failMode did: admitted (open) or refused with a 503 (closed); decisions of the local fallback are not counted here.', labelNames: ['mode'], registers: [registry]
  }))
  const inFlight = reuse('rate_limit_in_flight_leases', () => new prom.Gauge({
    name: prefix + 'rate_limit_in_flight_leases', help: 'Concurrency leases held by requests in flight on this instance.', labelNames: ['tier'], registers: [registry], collect: collectTallies
  }))
  const nearLimit = reuse('rate_limit_near_limit_total', () => new prom.Counter({
    name: prefix + 'rate_limit_near_limit_total', help: 'Admitted requests that left less than the near-limit share of a window or quota.', labelNames: [...labels, 'window'], registers: [registry], collect: collectTallies
  }))
  const invalidPolicyEntries = reuse('rate_limit_policy_invalid_entries_total', () => new prom.Counter({
    name: prefix + 'rate_limit_policy_invalid_entries_total', help: 'Stored policy entries skipped because they do not fit their schema (each counted once per instance, field and version).', registers: [registry]
  }))
  const quotaUsed = reuse('rate_limit_quota_used_ratio', () => new prom.Gauge({
    name: prefix + 'rate_limit_quota_used_ratio', help: 'Share of the monthly quota used, as of the tenant\'s latest request (updated at most once a second per tenant).', labelNames: ['tenant', 'tier'], registers: [registry]
  }))

  const tierMode = opts.tenantLabel === 'tier'
  const maxTenants = opts.maxTenantLabels ?? 100
  const seenTenants = new Set<string>()
  const tenantLabel = (subject: string, anonymous: boolean): string => {
    if (anonymous) return 'anonymous' // never an address: addresses are unbounded
    if (tierMode) return ''
    if (seenTenants.has(subject)) return subject
    if (seenTenants.size >= maxTenants) return 'other'
    seenTenants.add(subject)
    return subject
  }
  const counters = { requests, rejections, nearLimit, quotaUsed }
  // Children by label values, resolved once and kept: prom-client's labels() hashes its arguments
  // on every call.
  const latencyChild = cachedChildren((store: string) => latency.labels(store))
  const inFlightTally = cachedChildren((tier: string) => {
    const child = inFlight.labels(tier)
    child.inc(0) // the series exists (at 0) from the tier's first lease, even if its tally nets to zero
    return tallyFor(inFlight, child)
  })
  const endpoints = new Map<string, EndpointMetrics>()
  const metrics: LimiterMetrics = {
    enabled: true,
    nearLimitRatio: opts.nearLimitRatio ?? 0.8,
    endpoint (endpoint) {
      let known = endpoints.get(endpoint)
      if (known === undefined) {
        known = new EndpointSeries(endpoint, counters, tenantLabel)
        endpoints.set(endpoint, known)
      }
      return known
    },
    decision: (seconds, store) => latencyChild(store).observe(seconds),
    storeError: (store) => storeErrors.labels(store).inc(),
    failDecision: (mode) => failDecisions.labels(mode).inc(),
    leaseTaken: (tier) => inFlightTally(tier).add(1),
    leaseReleased: (tier) => inFlightTally(tier).add(-1),
    invalidPolicyEntry: () => invalidPolicyEntries.inc()
  }
  return { metrics, registry: registry as unknown as MetricsRegistry }
}

type Prom = typeof import('prom-client')
interface SeriesCounters {
  readonly requests: InstanceType<Prom['Counter']>
  readonly rejections: InstanceType<Prom['Counter']>
  readonly nearLimit: InstanceType<Prom['Counter']>
  readonly quotaUsed: InstanceType<Prom['Gauge']>
}

/** Above this many series per endpoint the cache starts again (label values are bounded anyway). */
const MAX_CACHED_SERIES = 10_000

class EndpointSeries implements EndpointMetrics {
  /** By tier, then by tenant label. */
  private readonly byTier = new TwoKeyCache<Series>(MAX_CACHED_SERIES)

  constructor (
    private readonly endpoint: string,
    private readonly counters: SeriesCounters,
    private readonly tenantLabel: (subject: string, anonymous: boolean) => string
  ) {}

  series (subject: string, anonymous: boolean, tier: string): RequestSeries {
    const tenant = this.tenantLabel(subject, anonymous)
    let series = this.byTier.get(tier, tenant)
    if (series === undefined) {
      series = new Series(this.counters, tenant, tier, this.endpoint)
      this.byTier.set(tier, tenant, series)
    }
    return series
  }
}

/** One tenant label, tier and endpoint: each tally is made on first use. */
class Series implements RequestSeries {
  private readonly statuses: Partial<Record<RequestStatus, Tally>> = {}
  /** By reason and scope (`reason scope`): at most four reasons times three scopes. */
  private readonly reasons: Partial<Record<string, Tally>> = {}
  private readonly windows: Partial<Record<NearLimitWindow, Tally>> = {}
  private quotaGauge: ReturnType<SeriesCounters['quotaUsed']['labels']> | undefined
  private quotaSetAt = 0

  constructor (private readonly counters: SeriesCounters, private readonly tenant: string, private readonly tier: string, private readonly endpoint: string) {}

  request (status: RequestStatus): void {
    const { requests } = this.counters
    ;(this.statuses[status] ??= tallyFor(requests, requests.labels(this.tenant, this.tier, this.endpoint, status))).add(1)
  }

  rejection (reason: RejectionReason, scope: Scope = 'tenant'): void {
    const { rejections } = this.counters
    ;(this.reasons[reason + ' ' + scope] ??= tallyFor(rejections, rejections.labels(this.tenant, this.tier, this.endpoint, reason, scope))).add(1)
  }

  nearLimit (window: NearLimitWindow): void {
    const { nearLimit } = this.counters
    ;(this.windows[window] ??= tallyFor(nearLimit, nearLimit.labels(this.tenant, this.tier, this.endpoint, window))).add(1)
  }

  quotaUsed (ratio: number): void {
    // A gauge read every scrape: once a second per series is fresh enough, and far cheaper.
    const now = Date.now()
    if (now - this.quotaSetAt < 1000) return
    this.quotaSetAt = now
    ;(this.quotaGauge ??= this.counters.quotaUsed.labels(this.tenant, this.tier)).set(ratio)
  }
}

/** Above this many label values a cache starts again (label values are bounded anyway). */
const MAX_CACHED_CHILDREN = 10_000

function cachedChildren<C> (make: (value: string) => C): (value: string) => C {
  const cache = new Map<string, C>()
  return (value: string): C => {
    let child = cache.get(value)
    if (child === undefined) {
      if (cache.size >= MAX_CACHED_CHILDREN) cache.clear()
      child = make(value)
      cache.set(value, child)
    }
    return child
  }
}

/** What an admission adds to its series: the request, and how close it came to each limit. */
export function recordAdmission (metrics: LimiterMetrics, decision: Decision, series: RequestSeries): void {
  series.request('allowed')
  const share = metrics.nearLimitRatio
  const { minute, hour, month } = decision
  if (minute.limit !== Infinity && minute.limit - minute.remaining >= share * minute.limit) series.nearLimit('minute')
  if (hour.limit !== Infinity && hour.limit - hour.remaining >= share * hour.limit) series.nearLimit('hour')
  if (month.limit !== Infinity) {
    const used = month.limit === 0 ? 1 : (month.limit - month.remaining) / month.limit
    if (used >= share) series.nearLimit('month')
    series.quotaUsed(used)
  }
}
