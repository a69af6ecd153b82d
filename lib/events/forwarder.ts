// Forwards the quota-alert stream to an HTTP receiver through a Redis consumer group: each entry is
// acknowledged only after a 2xx, so a forwarder that stops or crashes loses nothing, and each event id
// is posted once per group (see delivery-ledger.ts) however many copies the stream holds.
import type { Redis } from 'ioredis'
import { backoffDelay } from './backoff.js'
import { DeliveryLedger } from './delivery-ledger.js'
import { postEvent, type Receiver } from './http-post.js'
import { entriesOf, readEntry, type RawEntry, type StreamEntry } from './stream-entry.js'
import { pause, readUnlessStopped } from './stopping.js'

export interface ForwarderOptions {
  stream: string
  group: string
  consumer: string
  receiver: Receiver
  /** The longest wait between two attempts at one event. */
  maxBackoffMs: number
  /** Entries other consumers left pending this long are claimed; also a crashed consumer's lease time. */
  claimIdleMs: number
  /** One line per delivery on success too, not only per failure. */
  verbose: boolean
  /** Aborted to stop: the attempt in flight finishes (and counts when answered 2xx), then the forwarder returns. */
  signal: AbortSignal
  log: (line: string) => void
}

export interface ForwarderSummary {
  delivered: number
  /** Copies of an already delivered event id, acknowledged without a post. */
  duplicates: number
  /** Entries not in the stream's format, or trimmed away before delivery: acknowledged, never posted. */
  skipped: number
}

/** Entries read at once: small, so that forwarders in one group share a burst. */
const BATCH = 10
/** The longest a read blocks before the forwarder looks again for abandoned entries. */
const MAX_BLOCK_MS = 10_000

export async function forwardEvents (redis: Redis, options: ForwarderOptions): Promise<ForwarderSummary> {
  return await new Forwarder(redis, options).run()
}

class Forwarder {
  private readonly ledger: DeliveryLedger
  private readonly summary: ForwarderSummary = { delivered: 0, duplicates: 0, skipped: 0 }

  constructor (private readonly redis: Redis, private readonly options: ForwarderOptions) {
    this.ledger = new DeliveryLedger(redis, options.stream, options.group, options.consumer, options.claimIdleMs)
  }

  private get stopped (): boolean { return this.options.signal.aborted }

  async run (): Promise<ForwarderSummary> {
    const { stream, group, consumer, receiver } = this.options
    await this.createGroup()
    this.options.log(`forwarding ${stream} (group ${group}, consumer ${consumer}) to ${receiver.url.href}`)
    if (await this.redeliverOwnPending() && await this.claimAbandoned()) await this.forwardNew()
    const { delivered, duplicates, skipped } = this.summary
    this.options.log(`stopped: ${delivered} delivered, ${duplicates} duplicates acknowledged, ${skipped} entries skipped`)
    return this.summary
  }

  /** The group reads the stream from its first entry; an existing group keeps its place. */
  private async createGroup (): Promise<void> {
    try {
      await this.redis.xgroup('CREATE', this.options.stream, this.options.group, '0', 'MKSTREAM')
    } catch (err) {
      if (!(err as Error).message.startsWith('BUSYGROUP')) throw err
    }
  }

  /** What this consumer (by name) was given before and never acknowledged: a previous run stopped or crashed. */
  private async redeliverOwnPending (): Promise<boolean> {
    const { stream, group, consumer } = this.options
    let after = '0'
    while (!this.stopped) {
      const entries = entriesOf(await this.redis.xreadgroup('GROUP', group, consumer, 'COUNT', BATCH, 'STREAMS', stream, after))
      if (entries.length === 0) return true
      this.options.log(`re-delivering ${entries.length} entries left pending by consumer ${consumer}`)
      if (!await this.handleAll(entries)) return false
      after = entries[entries.length - 1][0]
    }
    return false
  }

  /** Entries other consumers left pending longer than claimIdleMs: they crashed, or were stopped for good. */
  private async claimAbandoned (): Promise<boolean> {
    const { stream, group, consumer, claimIdleMs } = this.options
    let cursor = '0-0'
    do {
      const [next, entries] = await this.redis.xautoclaim(stream, group, consumer, claimIdleMs, cursor, 'COUNT', BATCH) as [string, RawEntry[]]
      if (entries.length > 0) this.options.log(`claimed ${entries.length} entries other consumers left pending for over ${seconds(claimIdleMs)}`)
      if (!await this.handleAll(entries)) return false
      cursor = next
    } while (cursor !== '0-0' && !this.stopped)
    return !this.stopped
  }

  private async forwardNew (): Promise<void> {
    const { stream, group, consumer, claimIdleMs, signal } = this.options
    let nextClaim = Date.now() + claimIdleMs
    while (!this.stopped) {
      if (Date.now() >= nextClaim) {
        if (!await this.claimAbandoned()) return
        nextClaim = Date.now() + claimIdleMs
      }
      const block = Math.max(1, Math.min(MAX_BLOCK_MS, nextClaim - Date.now()))
      const reply = await readUnlessStopped(this.redis, signal, async () =>
        await this.redis.xreadgroup('GROUP', group, consumer, 'COUNT', BATCH, 'BLOCK', block, 'STREAMS', stream, '>'))
      if (this.stopped || !await this.handleAll(entriesOf(reply))) return
    }
  }

  /** In stream order, one at a time; false when stopped before the last was done (the rest stay pending). */
  private async handleAll (entries: RawEntry[]): Promise<boolean> {
    for (const raw of entries) {
      if (this.stopped || !await this.handle(readEntry(raw))) return false
    }
    return true
  }

  private async handle (entry: StreamEntry): Promise<boolean> {
    if (entry.kind !== 'event') {
      this.options.log(entry.kind === 'gone'
        ? `entry ${entry.entryId} was trimmed from the stream before delivery; acknowledged`
        : `entry ${entry.entryId} is not a quota alert (${entry.reason}); acknowledged without delivery`)
      await this.ledger.acknowledge(entry.entryId)
      this.summary.skipped++
      return true
    }
    if (await this.ledger.isDelivered(entry.eventId)) return await this.acknowledgeDuplicate(entry)
    if (!await this.waitForLease(entry)) return false
    const renewal = setInterval(() => { this.ledger.renewLease(entry.eventId, entry.entryId).catch(() => {}) }, this.options.claimIdleMs / 3)
    try {
      // Another consumer may have delivered a copy between the check above and the lease.
      if (await this.ledger.isDelivered(entry.eventId)) return await this.acknowledgeDuplicate(entry)
      if (!await this.deliver(entry)) return false
      await this.ledger.recordDelivered(entry.eventId, entry.entryId)
      this.summary.delivered++
      return true
    } finally {
      clearInterval(renewal)
      await this.ledger.releaseLease(entry.eventId).catch(() => {}) // else it ends by itself
    }
  }

  private async acknowledgeDuplicate (entry: StreamEntry & { kind: 'event' }): Promise<true> {
    await this.ledger.acknowledge(entry.entryId)
    this.summary.duplicates++
    if (this.options.verbose) this.options.log(`${entry.eventId} (entry ${entry.entryId}) was delivered already; acknowledged`)
    return true
  }

  /** While another consumer posts a copy of this event, wait: it succeeds (a duplicate) or lets go. */
  private async waitForLease (entry: StreamEntry & { kind: 'event' }): Promise<boolean> {
    const poll = Math.min(250, Math.max(10, this.options.claimIdleMs / 4))
    let told = false
    while (!await this.ledger.takeLease(entry.eventId)) {
      if (!told && this.options.verbose) this.options.log(`${entry.eventId} (entry ${entry.entryId}): another consumer is delivering a copy; waiting`)
      told = true
      if (!await pause(poll, this.options.signal)) return false
    }
    return true
  }

  /** Posts until a 2xx; false when stopped first (the entry stays pending, for the next run). */
  private async deliver (entry: StreamEntry & { kind: 'event' }): Promise<boolean> {
    const { receiver, maxBackoffMs, signal, verbose, log } = this.options
    for (let failures = 0; ;) {
      const started = Date.now()
      const attempt = await postEvent(receiver, entry.eventId, entry.json)
      if (attempt.delivered) {
        if (verbose) log(`delivered ${entry.eventId} (entry ${entry.entryId}): HTTP ${attempt.status} in ${Date.now() - started} ms${failures > 0 ? ` after ${failures} failed attempts` : ''}`)
        return true
      }
      failures++
      if (this.stopped) {
        log(`delivery of ${entry.eventId} (entry ${entry.entryId}) failed: ${attempt.reason}; stopping, the entry stays pending`)
        return false
      }
      const wait = backoffDelay(failures, maxBackoffMs)
      log(`delivery of ${entry.eventId} (entry ${entry.entryId}) failed: ${attempt.reason}; attempt ${failures}, next in ${seconds(wait)}`)
      if (!await pause(wait, signal)) return false
    }
  }
}

function seconds (ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${+(ms / 1000).toFixed(1)} s`
}
