// The latest quota alerts, for operators (the console's events feed, a tenant's recent alerts): read
// back from the stream every instance appends to, or, without a stream (the memory store, or
// `stream: false`), the events this instance saw itself since it started.
import { readEntry, type RawEntry } from '../events/stream-entry.js'
import type { RedisClient } from '../store/lua-script.js'
import type { QuotaAlertEvent } from './alert-event.js'

/** How many events this instance keeps in memory for operators. */
const HELD_IN_PROCESS = 200
/** How far back a search for one tenant's events reads the stream. */
const STREAM_SEARCH_DEPTH = 2000

export interface RecentAlertsQuery {
  /** At most this many, newest first. */
  limit: number
  /** Only this subject's (a tenant's, or an organization's for its own quota). */
  tenantId?: string
}

export interface RecentAlertsReply {
  /** Where they were read: the stream (every instance's), this process's own, or none (alerts off). */
  source: 'stream' | 'process' | 'off'
  events: QuotaAlertEvent[]
}

/** The events one instance handed to onAlert, newest last, at most HELD_IN_PROCESS. */
export class SeenAlerts {
  private readonly held: QuotaAlertEvent[] = []

  add (event: QuotaAlertEvent): void {
    this.held.push(event)
    if (this.held.length > HELD_IN_PROCESS) this.held.shift()
  }

  latest ({ limit, tenantId }: RecentAlertsQuery): QuotaAlertEvent[] {
    const found: QuotaAlertEvent[] = []
    for (let i = this.held.length - 1; i >= 0 && found.length < limit; i--) {
      const event = this.held[i]
      if (tenantId === undefined || event.tenantId === tenantId) found.push(event)
    }
    return found
  }
}

/** The newest events of the stream at `key`, searched `STREAM_SEARCH_DEPTH` entries deep for one tenant. */
export async function latestFromStream (client: RedisClient, key: string, { limit, tenantId }: RecentAlertsQuery): Promise<QuotaAlertEvent[]> {
  const depth = tenantId === undefined ? limit : STREAM_SEARCH_DEPTH
  const entries = await client.xrevrange(key, '+', '-', 'COUNT', depth) as RawEntry[]
  const found: QuotaAlertEvent[] = []
  for (const raw of entries) {
    const entry = readEntry(raw)
    if (entry.kind !== 'event') continue // malformed entries are the forwarder's to report
    const event = JSON.parse(entry.json) as QuotaAlertEvent
    if (tenantId !== undefined && event.tenantId !== tenantId) continue
    found.push(event)
    if (found.length === limit) break
  }
  return found
}
