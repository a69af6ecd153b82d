// While the store is away every request is decided without it; a log line (and a stack) per request
// would bury everything else at the rate a service takes traffic. The first such decision of an
// outage is logged with its cause, then one summary per interval for as long as they go on.
import type { FastifyBaseLogger } from 'fastify'

/** How a request was decided without the store, or a settled cost the store did not count. */
export type DegradedOutcome = 'admitted' | 'refused' | 'fallback' | 'unsettled'

/** At most this many distinct causes are counted per summary (the rest are counted as `other`). */
const MAX_CAUSES = 8

export class DegradedLog {
  /** Every decision made without the store since this instance started (the health report's). */
  readonly totals = { admitted: 0, refused: 0, fallback: 0, unsettled: 0 }
  /** When the latest of them was made (ms); null: never. */
  lastAt: number | null = null
  private counts = { admitted: 0, refused: 0, fallback: 0, unsettled: 0 }
  private causes = new Map<string, number>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly log: FastifyBaseLogger, private readonly intervalMs = 10_000) {}

  /** One decision made without the store; `cause` is the store's failure (none for the fallback's own decisions). */
  note (outcome: DegradedOutcome, cause?: unknown): void {
    this.totals[outcome]++
    this.lastAt = Date.now()
    if (this.timer === undefined) {
      this.log.warn({ err: cause, outcome }, 'rate limiting: deciding without the store (%s); a summary follows every %d s while this lasts', outcome, this.intervalMs / 1000)
      this.timer = setInterval(() => this.summarise(), this.intervalMs)
      this.timer.unref()
      return
    }
    this.counts[outcome]++
    if (cause !== undefined) {
      const name = cause instanceof Error ? cause.message : String(cause)
      const key = this.causes.has(name) || this.causes.size < MAX_CAUSES ? name : 'other'
      this.causes.set(key, (this.causes.get(key) ?? 0) + 1)
    }
  }

  /** Logs what the last interval decided without the store; a quiet interval ends the outage's log. */
  private summarise (): void {
    const { admitted, refused, fallback, unsettled } = this.counts
    const total = admitted + refused + fallback + unsettled
    if (total === 0) {
      this.stop()
      this.log.info('rate limiting: no decision without the store in the last %d s', this.intervalMs / 1000)
      return
    }
    this.log.warn({ admitted, refused, fallback, unsettled, causes: Object.fromEntries(this.causes) },
      'rate limiting: %d decisions without the store in the last %d s', total, this.intervalMs / 1000)
    this.counts = { admitted: 0, refused: 0, fallback: 0, unsettled: 0 }
    this.causes = new Map()
  }

  stop (): void {
    clearInterval(this.timer)
    this.timer = undefined
  }
}
