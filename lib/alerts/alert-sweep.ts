// Appends the quota alerts whose append did not happen: the admission that crossed a threshold left a
// pending mark in its subject's usage record (p:q:<thresholds> or p:b:<thresholds>:<bucket> =
// 'used:quota:at'), which goes once the event is in the stream. Every instance sweeps on a timer,
// one at a time (a lock for the period): it scans the usage records of this month and the last, on
// every master, and appends what is still marked. An event appended whose mark was not removed yet
// is appended again: a duplicate, with the same id.
import type { FastifyBaseLogger } from 'fastify'
import { hostname } from 'node:os'
import type { Redis } from 'ioredis'
import { KEY_LAYOUT_VERSION } from '../keys.js'
import type { RedisClient } from '../store/lua-script.js'
import { alertEvent, type QuotaAlertEvent } from './alert-event.js'
import type { AlertPublisher } from './alert-publisher.js'
import { subjectOfUsageKey, usageKeyPattern } from '../store/usage-record.js'

const SCAN_COUNT = 1000

/** The events a pending mark stands for. */
export function markedEvents (key: string, field: string, value: string, record: Record<string, string>): QuotaAlertEvent[] {
  const [kind, list, ...rest] = field.slice(2).split(':')
  const [used, quota, at] = value.split(':').map(Number)
  if ((kind !== 'q' && kind !== 'b') || list === undefined || !Number.isFinite(at)) return []
  const bucket = kind === 'b' ? rest.join(':') : undefined
  const fromKey = subjectOfUsageKey(key)
  const scope = record.scope === 'organization' || record.scope === 'tenant' ? record.scope : fromKey.scope
  const subject = record.id ?? fromKey.id
  const tier = record.tier === undefined || record.tier === '' ? null : record.tier
  return list.split(',').map(Number).map(threshold =>
    alertEvent({ scope, bucket: kind === 'b', threshold, used, quota }, subject, tier, bucket, at))
}

export class AlertSweep {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<number> | undefined
  private readonly me = `${hostname()}:${process.pid}`

  constructor (
    private readonly client: RedisClient,
    private readonly keyPrefix: string,
    private readonly publisher: AlertPublisher,
    private readonly intervalMs: number,
    private readonly log: Pick<FastifyBaseLogger, 'warn'>
  ) {}

  start (): void {
    this.timer = setInterval(() => { this.sweep().catch(() => {}) }, this.intervalMs)
    this.timer.unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    await this.running?.catch(() => {})
  }

  /** One sweep, unless another instance holds this period's lock (`force`: regardless). Returns the events appended. */
  async sweep (now = Date.now(), force = false): Promise<number> {
    if (this.running !== undefined) return await this.running
    this.running = this.sweepOnce(now, force).finally(() => { this.running = undefined })
    return await this.running
  }

  private async sweepOnce (now: number, force: boolean): Promise<number> {
    const lock = `${this.keyPrefix}:${KEY_LAYOUT_VERSION}:{alerts-sweep}`
    if (!force && await this.client.set(lock, this.me, 'PX', this.intervalMs, 'NX') === null) return 0
    const nodes = 'nodes' in this.client ? this.client.nodes('master') : [this.client as Redis]
    let appended = 0
    try {
      for (const month of [monthId(now), monthId(previousMonthStart(now))]) {
        for (const node of nodes) appended += await this.sweepNode(node, month)
      }
    } catch (err) {
      this.log.warn({ err }, 'rate limiting: the quota alerts sweep failed; the next one tries again')
    }
    return appended
  }

  private async sweepNode (node: Redis, month: number): Promise<number> {
    const pattern = usageKeyPattern(this.keyPrefix, String(month))
    let cursor = '0'
    let appended = 0
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
      cursor = next
      if (keys.length === 0) continue
      const pipeline = node.pipeline()
      for (const key of keys) pipeline.hgetall(key)
      const records = (await pipeline.exec()) ?? []
      const appends: Array<Promise<void>> = []
      keys.forEach((key, i) => {
        const [err, record] = records[i] ?? []
        if (err !== null && err !== undefined) return
        for (const [field, value] of Object.entries(record as Record<string, string>)) {
          if (!field.startsWith('p:')) continue
          const events = markedEvents(key, field, value, record as Record<string, string>)
          appended += events.length
          appends.push(this.publisher.append(events, key, field))
        }
      })
      await Promise.all(appends)
    } while (cursor !== '0')
    return appended
  }
}

function monthId (at: number): number {
  const date = new Date(at)
  return date.getUTCFullYear() * 100 + date.getUTCMonth() + 1
}

function previousMonthStart (at: number): number {
  const date = new Date(at)
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() - 1, 1)
}
