// fastify.rateLimitStatus: what an operator asks of one instance — is its store healthy, and which
// quota alerts came lately. The console's platform page and its events feed read it; so may a
// service's own health route.
import type { AlertPublisher } from './alerts/alert-publisher.js'
import { latestFromStream, type RecentAlertsQuery, type RecentAlertsReply } from './alerts/recent-alerts.js'
import { withDeadline } from './deadline.js'
import type { DegradedLog } from './degraded-log.js'
import type { RedisClient } from './store/lua-script.js'
import { ResilientStore } from './store/resilient-store.js'
import type { RateLimitStore } from './store/types.js'

export type { RecentAlertsQuery, RecentAlertsReply } from './alerts/recent-alerts.js'

/** How long a health check waits for Redis's PING. */
const PING_DEADLINE_MS = 1000

export interface StoreHealth {
  store: 'redis' | 'memory'
  /** Whether Redis answered PING (every master of a Cluster); null for the memory store. */
  reachable: boolean | null
  /** The slowest PING's round trip in ms; null when none answered, or for the memory store. */
  pingMs: number | null
  /** 'open' while any node's circuit breaker keeps decisions away from the store. */
  breaker: 'closed' | 'open'
  /** The nodes whose breaker is open ('' for a single Redis). */
  openNodes: string[]
  /** Whether a local fallback limiter decides while the store is away. */
  fallback: boolean
  /** Decisions made without the store since this instance started, by outcome, and the latest's time. */
  degraded: { admitted: number, refused: number, fallback: number, unsettled: number, lastAt: number | null }
  checkedAt: number
}

export class RateLimitStatus {
  constructor (
    private readonly store: RateLimitStore,
    private readonly redis: RedisClient | undefined,
    private readonly degraded: DegradedLog,
    private readonly alerts: AlertPublisher | undefined
  ) {}

  /** The store's health as this instance sees it. Never throws: an unreachable Redis is an answer. */
  async health (): Promise<StoreHealth> {
    const resilient = this.store instanceof ResilientStore ? this.store : undefined
    const openNodes = resilient?.openNodes() ?? []
    const ping = this.redis === undefined ? null : await pingAll(this.redis)
    return {
      store: this.store.kind,
      reachable: ping === null ? null : ping.ok,
      pingMs: ping?.ms ?? null,
      breaker: openNodes.length > 0 ? 'open' : 'closed',
      openNodes,
      fallback: resilient?.fallback !== undefined,
      degraded: { ...this.degraded.totals, lastAt: this.degraded.lastAt },
      checkedAt: Date.now()
    }
  }

  /**
   * The newest quota alerts: from the stream when there is one (every instance's; on failure the
   * error is the caller's), else the ones this instance saw.
   */
  async recentAlerts (query: RecentAlertsQuery): Promise<RecentAlertsReply> {
    const alerts = this.alerts
    if (alerts === undefined) return { source: 'off', events: [] }
    const key = alerts.settings.streamKey
    if (key === undefined || this.redis === undefined) return { source: 'process', events: alerts.seen.latest(query) }
    return { source: 'stream', events: await latestFromStream(this.redis, key, query) }
  }
}

/** PING to every master (one Redis: itself); ok only when all answered in time. */
async function pingAll (client: RedisClient): Promise<{ ok: boolean, ms: number | null }> {
  const nodes = 'nodes' in client ? client.nodes('master') : [client]
  const times = await Promise.all(nodes.map(async node => {
    const start = performance.now()
    try {
      await withDeadline(node.ping(), PING_DEADLINE_MS, 'Redis')
      return performance.now() - start
    } catch {
      return undefined
    }
  }))
  const answered = times.filter((t): t is number => t !== undefined)
  return {
    ok: nodes.length > 0 && answered.length === nodes.length,
    ms: answered.length === 0 ? null : Math.round(Math.max(...answered) * 100) / 100
  }
}
