// What the benchmark runs: one server per scenario, all answering GET /bench with { ok: true }.
// Shared by the parent (load, report) and the server children (scripts/bench/server.mjs).

export const ROUTE = '/bench'

/** The header the 10,000-tenant scenarios name their tenant in. */
export const TENANT_HEADER = 'x-tenant'
export const TENANT_COUNT = 10_000
export const HOT_TENANT = 'bench-tenant'

/** Limits never reached; a finite concurrency limit, so every request takes and gives back a lease. */
export const OPEN_TIER = Object.freeze({
  requestsPerMinute: 1_000_000_000,
  requestsPerHour: 1_000_000_000,
  concurrentRequests: 10_000,
  monthlyQuota: 1_000_000_000_000
})

/** Over its minute limit after the first 10 requests: nearly every request is answered 429. */
export const OVER_LIMIT_TIER = Object.freeze({ ...OPEN_TIER, requestsPerMinute: 10 })

/** `max` / `points` of the peers: high enough that nothing is ever rejected. */
export const PEER_MAX = 1_000_000_000

/** The one-round-trip floor: a script that does nothing, with one key. */
export const PROBE_SCRIPT = 'return 1'

/** The reference of the one-connection scenarios: their added latency is over this one's. */
export const BARE_ONE_CONNECTION = 'bare-1conn'

/**
 * kind: bare | plugin (this package) | frl (@fastify/rate-limit) | rlf (rate-limiter-flexible) | probe |
 * replay429 (bare Fastify answering every request with the plugin's over-limit 429, captured at start)
 * store: null | memory | redis. expect: 'ok' (any non-2xx fails the run) or 'reject' (429s expected).
 * tenants: a tenant per request from TENANT_HEADER, drawn at random from this many (scripts/bench/load.mjs).
 * cluster: Redis is the bench's private three-master Redis Cluster, not REDIS_URL.
 * connections: this many load-generator connections instead of BENCH_CONNECTIONS (the unloaded-latency
 * scenarios, reported apart from the others).
 * alerts: false turns quota alerts off (they are on by default).
 * levels: the tenant belongs to an organization with limits and the route has a shared budget (three
 * levels in each decision).
 * baseline: the plugin of another checkout, built (its folder in BENCH_BASELINE): an ablation of
 * whatever differs, measured in the same rounds. Run only when BENCH_BASELINE is set.
 */
export const SCENARIOS = Object.freeze([
  { name: 'bare', label: 'bare Fastify', kind: 'bare', store: null },
  { name: 'memory', label: 'this plugin, memory store', kind: 'plugin', store: 'memory' },
  { name: 'memory-compact-headers', label: 'this plugin, memory store, `headers: \'compact\'`', kind: 'plugin', store: 'memory', headers: 'compact' },
  { name: 'redis', label: 'this plugin, Redis (one tenant)', kind: 'plugin', store: 'redis' },
  { name: 'redis-settle', label: 'this plugin, Redis (one tenant), a cost function and a settle per request', kind: 'plugin', store: 'redis', settle: true },
  { name: 'redis-levels', label: 'this plugin, Redis (one tenant) in an organization with limits, on a route with a shared budget', kind: 'plugin', store: 'redis', levels: true },
  { name: 'redis-over-limit', label: 'this plugin, Redis, tenant over its minute limit', kind: 'plugin', store: 'redis', tier: 'bench-over', expect: 'reject' },
  { name: 'redis-10k-tenants', label: 'this plugin, Redis, 10,000 tenants', kind: 'plugin', store: 'redis', tenants: TENANT_COUNT },
  { name: 'redis-10k-cluster', label: 'this plugin, Redis Cluster (3 masters), 10,000 tenants', kind: 'plugin', store: 'redis', tenants: TENANT_COUNT, cluster: true },
  { name: 'redis-no-alerts', label: 'this plugin, Redis (one tenant), `quotaAlerts: false`', kind: 'plugin', store: 'redis', alerts: false },
  { name: 'redis-no-metrics', label: 'this plugin, Redis, `metrics: false`', kind: 'plugin', store: 'redis', metrics: false },
  { name: 'redis-no-headers', label: 'this plugin, Redis, `headers: false`', kind: 'plugin', store: 'redis', headers: false },
  { name: 'redis-compact-headers', label: 'this plugin, Redis, `headers: \'compact\'`', kind: 'plugin', store: 'redis', headers: 'compact' },
  { name: 'bare-429', label: 'reference: bare Fastify sending the over-limit 429 (same headers and body, no limiter)', kind: 'replay429', store: null, expect: 'reject' },
  { name: 'frl-memory', label: '@fastify/rate-limit, memory', kind: 'frl', store: 'memory' },
  { name: 'frl-redis', label: '@fastify/rate-limit, Redis', kind: 'frl', store: 'redis' },
  { name: 'frl-redis-10k', label: '@fastify/rate-limit, Redis, 10,000 tenants', kind: 'frl', store: 'redis', tenants: TENANT_COUNT },
  { name: 'frl-redis-10k-cluster', label: '@fastify/rate-limit, Redis Cluster (3 masters), 10,000 tenants', kind: 'frl', store: 'redis', tenants: TENANT_COUNT, cluster: true },
  { name: 'redis-10k-cluster-autopipe', label: 'this plugin, Redis Cluster, 10,000 tenants, client with `enableAutoPipelining`', kind: 'plugin', store: 'redis', tenants: TENANT_COUNT, cluster: true, autoPipelining: true },
  { name: 'frl-redis-10k-cluster-autopipe', label: '@fastify/rate-limit, Redis Cluster, 10,000 tenants, client with `enableAutoPipelining`', kind: 'frl', store: 'redis', tenants: TENANT_COUNT, cluster: true, autoPipelining: true },
  { name: 'rlf-redis', label: 'rate-limiter-flexible `RateLimiterRedis`', kind: 'rlf', store: 'redis' },
  { name: 'evalsha', label: 'probe: one bare EVALSHA', kind: 'probe', store: 'redis' },
  { name: 'evalsha-pipelined', label: 'probe: one bare EVALSHA, `enableAutoPipelining`', kind: 'probe', store: 'redis', autoPipelining: true },
  { name: BARE_ONE_CONNECTION, label: 'bare Fastify, one connection', kind: 'bare', store: null, connections: 1 },
  { name: 'redis-1conn', label: 'this plugin, Redis (one tenant), one connection', kind: 'plugin', store: 'redis', connections: 1 },
  { name: 'frl-redis-1conn', label: '@fastify/rate-limit, Redis, one connection', kind: 'frl', store: 'redis', connections: 1 },
  { name: 'baseline-redis', label: 'the baseline build (BENCH_BASELINE), Redis (one tenant)', kind: 'plugin', store: 'redis', baseline: true },
  { name: 'baseline-redis-10k-tenants', label: 'the baseline build, Redis, 10,000 tenants', kind: 'plugin', store: 'redis', tenants: TENANT_COUNT, baseline: true },
  { name: 'baseline-redis-10k-cluster', label: 'the baseline build, Redis Cluster (3 masters), 10,000 tenants', kind: 'plugin', store: 'redis', tenants: TENANT_COUNT, cluster: true, baseline: true },
  { name: 'baseline-redis-1conn', label: 'the baseline build, Redis (one tenant), one connection', kind: 'plugin', store: 'redis', connections: 1, baseline: true },
  { name: 'baseline-redis-over-limit', label: 'the baseline build, Redis, tenant over its minute limit', kind: 'plugin', store: 'redis', tier: 'bench-over', expect: 'reject', baseline: true },
  { name: 'baseline-memory', label: 'the baseline build, memory store', kind: 'plugin', store: 'memory', baseline: true },
  { name: 'baseline-redis-levels', label: 'the baseline build, Redis (one tenant) in an organization with limits, on a route with a shared budget', kind: 'plugin', store: 'redis', levels: true, baseline: true },
  { name: 'baseline-redis-settle', label: 'the baseline build, Redis (one tenant), a cost function and a settle per request', kind: 'plugin', store: 'redis', settle: true, baseline: true }
].map((s) => Object.freeze({ expect: 'ok', ...s })))

/** Same-round ratios worth reading on their own: [numerator, denominator, what it shows]. */
export const PAIRS = Object.freeze([
  ['redis', 'frl-redis', 'this plugin, Redis ÷ @fastify/rate-limit, Redis (one tenant)'],
  ['redis-settle', 'redis', 'a cost function and a settle per request ÷ the plain Redis path (one tenant)'],
  ['redis-levels', 'redis', 'an organization and a shared route budget on every request ÷ the plain Redis path (one tenant)'],
  ['redis-10k-tenants', 'frl-redis-10k', 'this plugin, Redis ÷ @fastify/rate-limit, Redis (10,000 tenants)'],
  ['redis-10k-cluster', 'frl-redis-10k-cluster', 'this plugin ÷ @fastify/rate-limit, both on a three-master Redis Cluster (10,000 tenants)'],
  ['redis-10k-cluster', 'redis-10k-tenants', 'this plugin, 10,000 tenants: Redis Cluster ÷ one Redis'],
  ['redis-10k-cluster-autopipe', 'frl-redis-10k-cluster-autopipe', 'this plugin ÷ @fastify/rate-limit, both on the Cluster with `enableAutoPipelining` (10,000 tenants)'],
  ['redis-10k-cluster-autopipe', 'redis-10k-cluster', 'this plugin on the Cluster: `enableAutoPipelining` ÷ without'],
  ['redis-10k-tenants', 'redis', '10,000 tenants ÷ one hot tenant'],
  ['redis-over-limit', 'bare-429', 'over-limit tenant ÷ the same 429 from bare Fastify (what the limiter itself costs a rejection)'],
  ['bare-429', 'bare', 'the over-limit 429 from bare Fastify ÷ bare Fastify (what the answer itself costs)'],
  ['redis', 'redis-no-alerts', 'quota alerts on (the default) ÷ `quotaAlerts: false`, Redis (one tenant)'],
  ['redis-no-metrics', 'redis', '`metrics: false` ÷ metrics on'],
  ['redis-no-headers', 'redis', '`headers: false` (no rate-limit headers) ÷ the default'],
  ['redis-compact-headers', 'redis', '`headers: \'compact\'` (3 rate-limit headers) ÷ the default (up to 9)'],
  ['redis-compact-headers', 'frl-redis', '`headers: \'compact\'` ÷ @fastify/rate-limit, Redis (3 headers each)'],
  ['redis', 'rlf-redis', 'this plugin, Redis ÷ rate-limiter-flexible'],
  ['redis', 'evalsha', 'this plugin, Redis ÷ bare EVALSHA probe'],
  ['redis', 'evalsha-pipelined', 'this plugin, Redis ÷ bare EVALSHA probe, auto-pipelined (the one-round-trip floor)'],
  ['evalsha-pipelined', 'evalsha', 'auto-pipelined probe ÷ plain probe'],
  ['memory', 'frl-memory', 'this plugin, memory ÷ @fastify/rate-limit, memory'],
  ['memory-compact-headers', 'frl-memory', 'this plugin, memory, `headers: \'compact\'` ÷ @fastify/rate-limit, memory (3 headers each)'],
  ['redis', 'baseline-redis', 'this build ÷ the baseline build, Redis (one tenant)'],
  ['redis-10k-tenants', 'baseline-redis-10k-tenants', 'this build ÷ the baseline build, Redis (10,000 tenants)'],
  ['redis-10k-cluster', 'baseline-redis-10k-cluster', 'this build ÷ the baseline build, Redis Cluster (10,000 tenants)'],
  ['redis-1conn', 'baseline-redis-1conn', 'this build ÷ the baseline build, Redis, one connection'],
  ['redis-over-limit', 'baseline-redis-over-limit', 'this build ÷ the baseline build, Redis, tenant over its minute limit'],
  ['memory', 'baseline-memory', 'this build ÷ the baseline build, memory store'],
  ['redis-levels', 'baseline-redis-levels', 'this build ÷ the baseline build, an organization and a shared route budget on every request'],
  ['redis-settle', 'baseline-redis-settle', 'this build ÷ the baseline build, a cost function and a settle per request']
])

/** Scenarios whose Redis commands per request are counted after the throughput rounds. */
export const COMMAND_COUNT_SCENARIOS = Object.freeze(['redis', 'redis-levels', 'redis-over-limit', 'frl-redis', 'rlf-redis'])

export const NOT_MEASURED = Object.freeze([
  {
    label: '@upstash/ratelimit',
    reason: 'it speaks to Redis only through @upstash/redis, an HTTP client of the Upstash REST API, so it needs an ' +
      'Upstash REST endpoint and cannot run against a plain Redis on loopback; an HTTP bridge in front of Redis ' +
      'would add a hop of its own and measure the bridge, not the library'
  }
])

/** The Redis key prefix of one scenario; every key it writes starts with this and a colon. */
export function scenarioPrefix (runPrefix, name) {
  return `${runPrefix}:${name}`
}
