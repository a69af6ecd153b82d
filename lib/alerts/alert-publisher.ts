// Quota alerts leave the instance that saw the crossing: handed to `onAlert`, and appended to a Redis
// Stream that any number of consumers read (maestro-rl events forward). The admission that crossed a
// threshold also left a pending mark in its subject's usage record; the mark goes once the event is
// in the stream. A crossing whose append did not happen (Redis away, this instance gone) keeps its
// mark, and the sweep (see alert-sweep.ts) appends it later: at least once, never lost, and a
// duplicate carries the same id.
import type { FastifyBaseLogger } from 'fastify'
import { subjectBaseOf, type StoreKeys } from '../keys.js'
import type { RedisClient } from '../store/lua-script.js'
import type { AdmitLevel, Crossing, Decision } from '../store/types.js'
import { alertEvent, type QuotaAlertEvent } from './alert-event.js'
import { SeenAlerts } from './recent-alerts.js'

export interface AlertSettings {
  readonly thresholds: readonly number[]
  readonly onAlert: ((event: QuotaAlertEvent) => void) | undefined
  /** The stream's key; undefined: no stream (onAlert only). */
  readonly streamKey: string | undefined
  /** The stream is trimmed to about this many entries. */
  readonly maxLength: number
}

/** Who a request was, as its crossings' events name it. */
export interface Crosser {
  readonly subject: string
  readonly tier: string
  readonly bucket: string | undefined
  readonly keys: StoreKeys
  /** The levels the request was decided at: its organization's names an organization's crossings. */
  readonly levels: readonly AdmitLevel[] | undefined
}

/** The pending mark an admission left for these crossings (see admit-batch.lua's usage records). */
export function pendingMark (crossings: readonly Crossing[], keys: StoreKeys): string {
  const thresholds = crossings.map(c => String(c.threshold)).join(',')
  if (!crossings[0].bucket) return 'p:q:' + thresholds
  const base = subjectBaseOf(keys)
  return 'p:b:' + thresholds + ':' + keys.counters.slice(base.length + 2, -2)
}

/** The usage record of a subject's month (`yyyymm` of `at`). */
export function usageKeyOf (keys: StoreKeys, at: number): string {
  const date = new Date(at)
  return subjectBaseOf(keys) + 'usage:' + String(date.getUTCFullYear() * 100 + date.getUTCMonth() + 1)
}

export class AlertPublisher {
  private failing = false
  /** The events this instance saw, for operators when there is no stream to read them back from. */
  readonly seen = new SeenAlerts()

  constructor (
    readonly settings: AlertSettings,
    /** Where the stream is; undefined (the memory store): events stay in process. */
    private readonly client: RedisClient | undefined,
    private readonly log: Pick<FastifyBaseLogger, 'warn' | 'error'>
  ) {}

  /** The crossings of one admitted request: an event each, to onAlert and the stream. */
  publish (decision: Decision, who: Crosser): void {
    const crossings = decision.crossings
    if (crossings === undefined) return
    // One group per count (the subject's quota, its bucket's cap, its organization's quota): the
    // admission left one pending mark per group.
    const groups = new Map<string, Crossing[]>()
    for (const crossing of crossings) {
      const group = crossing.scope + (crossing.bucket ? ' b' : ' q')
      const list = groups.get(group)
      if (list === undefined) groups.set(group, [crossing])
      else list.push(crossing)
    }
    const organization = who.levels?.[0]
    for (const group of groups.values()) {
      const org = group[0].scope === 'organization' ? organization : undefined
      if (group[0].scope === 'organization' && (org?.scope !== 'organization' || org.id === undefined)) continue
      const keys = org?.keys ?? who.keys
      const events = group.map(c => alertEvent(c, org?.id ?? who.subject, org !== undefined ? org.tier ?? null : who.tier, who.bucket, decision.now))
      for (const event of events) this.handOver(event)
      if (this.client !== undefined) this.append(events, usageKeyOf(keys, decision.now), pendingMark(group, keys)).catch(() => {})
    }
  }

  /** Appends events whose pending mark is `mark` in `usageKey`, then removes the mark. Never rejects. */
  async append (events: readonly QuotaAlertEvent[], usageKey: string, mark: string): Promise<void> {
    const { client, settings } = this
    if (client === undefined) return
    const appended = settings.streamKey === undefined
      ? Promise.resolve()
      : Promise.all(events.map(async event => await client.xadd(settings.streamKey as string, 'MAXLEN', '~', String(settings.maxLength), '*', 'id', event.id, 'event', JSON.stringify(event))))
    await appended
      .then(async () => await client.hdel(usageKey, mark))
      .then(() => { this.failing = false })
      .catch((err: unknown) => {
        if (this.failing) return
        this.failing = true
        this.log.warn({ err }, 'rate limiting: could not append quota alerts to the stream; they stay pending and the sweep appends them later')
      })
  }

  private handOver (event: QuotaAlertEvent): void {
    this.seen.add(event)
    const { onAlert } = this.settings
    if (onAlert === undefined) return
    try {
      onAlert(event)
    } catch (err) {
      this.log.error({ err, alert: event.id }, 'rate limiting: onAlert threw')
    }
  }
}
