// Sends the admissions of one event-loop turn to Redis as one call of the batch script
// (lib/lua/admit-batch.lua): one command to encode, one reply to read and one script start in Redis
// for many requests, instead of one each. Each item still succeeds or fails on its own.
import type { Redis } from 'ioredis'
import { batchArguments, type WireItem } from './admit-protocol.js'
import type { LuaScript, RedisClient } from './lua-script.js'
import { StoreReplyError } from '../errors.js'
import { StoreUnavailableError } from './store-unavailable.js'
import { MAX_ITEMS_PER_CALL, TurnQueue } from './turn-queue.js'
import { rethrowLater } from './types.js'

/** One request's part of a batch (or an item that only gives leases back: `terms` ''). */
export interface BatchItem extends WireItem {
  /** The store's clock in ms, or -1 for Redis TIME: a batch holds items of one clock only. */
  readonly clock: number
  /** The next item is a further level of the same request: the two go in one call. */
  readonly joinsNext?: boolean
  /** May come after `reject` (a reply past the deadline): the item then undoes what it took. */
  readonly resolve: (line: string) => void
  readonly reject: (err: unknown) => void
}

export class AdmitBatcher {
  private readonly turn = new TurnQueue<BatchItem>(items => this.flush(items))
  /** Calls sent and not answered yet. */
  private readonly inFlight = new Set<SentCall>()

  /**
   * `batching` false (a Redis Cluster, where one call may only touch one slot): every item is sent
   * alone, at once. `shared(clock)` gives the script's first argument for a batch of that clock.
   * `timeoutMs`: how long a sent call may go unanswered before its items fail (undefined: no limit).
   */
  constructor (
    private readonly client: RedisClient,
    private readonly script: LuaScript,
    readonly batching: boolean,
    private readonly shared: (clock: number) => string,
    private readonly timeoutMs?: number
  ) {}

  /** Fails every call still waiting for Redis (the store is closing: nothing else would answer them). */
  failInFlight (err: unknown): void {
    for (const call of this.inFlight) call.fail(err)
  }

  send (item: BatchItem): void {
    if (!this.batching) {
      this.call([item], 0, 1)
      return
    }
    this.turn.push(item)
  }

  /** The levels of one request (each but the last `joinsNext`): always in one call. */
  sendGroup (items: readonly BatchItem[]): void {
    if (!this.batching) {
      this.call(items, 0, items.length)
      return
    }
    for (const item of items) this.turn.push(item)
  }

  /**
   * One turn's items, as calls of at most MAX_ITEMS_PER_CALL items of one clock; the levels of one
   * request are never split (a call may run over the bound to keep them together).
   */
  private flush (queue: BatchItem[]): void {
    let start = 0
    while (start < queue.length) {
      let end = start + 1
      while (end < queue.length && ((end - start < MAX_ITEMS_PER_CALL && queue[end].clock === queue[start].clock) || queue[end - 1].joinsNext === true)) end++
      this.call(queue, start, end)
      start = end
    }
  }

  /** Sends items[start, end) as one script call; every item gets its own line back. */
  private call (items: readonly BatchItem[], start: number, end: number): void {
    const { args, keys } = batchArguments(items, start, end, this.shared(items[start].clock))
    const call = new SentCall(this.inFlight, items, start, end, this.timeoutMs)
    this.script.run(this.client as Redis, args, keys).then(call.replied, call.fail)
  }
}

/**
 * One script call on its way, answered once: by Redis, by its deadline, or by the store closing.
 * The deadline counts from the moment the call is handed to the client, so time a request spent
 * in this process's own queue is not blamed on Redis. It is judged in a setImmediate, after the
 * event loop has read every reply that arrived meanwhile: a busy event loop that only reads a reply
 * late does not make Redis look slow.
 */
class SentCall {
  private answered = false
  private readonly timer: NodeJS.Timeout | undefined

  constructor (
    private readonly inFlight: Set<SentCall>,
    private readonly items: readonly BatchItem[],
    private readonly start: number,
    private readonly end: number,
    timeoutMs: number | undefined
  ) {
    inFlight.add(this)
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(() => setImmediate(() => this.fail(new StoreUnavailableError('timeout'))), timeoutMs)
      this.timer.unref()
    }
  }

  /** Every item gets its line; items already failed by the deadline undo what they were given. */
  readonly replied = (reply: unknown): void => {
    const late = this.answered
    this.settle()
    const { items, start, end } = this
    const lines = typeof reply === 'string' ? reply.split('\n') : []
    if (lines.length !== end - start) {
      if (!late) rejectAll(items, start, end, new StoreReplyError(JSON.stringify(reply)))
      return
    }
    for (let i = start; i < end; i++) {
      const line = lines[i - start]
      try {
        if (!line.startsWith('E ')) items[i].resolve(line)
        else if (!late) items[i].reject(new StoreReplyError(line.slice(2)))
      } catch (err) {
        rethrowLater(err)
      }
    }
  }

  /** Fails every item, unless the call was answered already. */
  readonly fail = (err: unknown): void => {
    if (this.answered) return
    this.settle()
    rejectAll(this.items, this.start, this.end, err)
  }

  private settle (): void {
    this.answered = true
    clearTimeout(this.timer)
    this.inFlight.delete(this)
  }
}

function rejectAll (items: readonly BatchItem[], start: number, end: number, err: unknown): void {
  for (let i = start; i < end; i++) {
    try {
      items[i].reject(err)
    } catch (thrown) {
      rethrowLater(thrown)
    }
  }
}
