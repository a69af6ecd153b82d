// Sends the admissions of one event-loop turn to Redis as one call of the batch script
// (lib/lua/admit-batch.lua): one command to encode, one reply to read and one script start in Redis
// for many requests, instead of one each. Each item still succeeds or fails on its own.
import type { Redis } from 'ioredis'
import type { LuaScript, RedisClient } from './lua-script.js'
import { StoreReplyError } from '../errors.js'
import { rethrowLater } from './types.js'

/** One request's part of a batch (or an item that only gives leases back: `terms` ''). */
export interface BatchItem {
  readonly counters: string
  readonly leases: string
  /** JSON `[cost, minute, hour, month, concurrency]`, or '' to only give leases back. */
  readonly terms: string
  readonly leaseId: string
  /** Lease ids to give back first: '', one id (not starting with '['), or a JSON array of ids. */
  readonly releasing: string
  /** The store's clock in ms, or -1 for Redis TIME: a batch holds items of one clock only. */
  readonly clock: number
  readonly resolve: (line: string) => void
  readonly reject: (err: unknown) => void
}

/** A batch runs as one script: bounded, so one call never holds Redis for long (about 2 ms). */
const MAX_ITEMS_PER_CALL = 128

export class AdmitBatcher {
  private queue: BatchItem[] = []
  private scheduled = false
  private readonly flushBound = (): void => this.flush()

  /**
   * `batching` false (a Redis Cluster, where one call may only touch one slot): every item is sent
   * alone, at once. `shared(clock)` gives the script's first argument for a batch of that clock.
   */
  constructor (
    private readonly client: RedisClient,
    private readonly script: LuaScript,
    private readonly batching: boolean,
    private readonly shared: (clock: number) => string
  ) {}

  send (item: BatchItem): void {
    if (!this.batching) {
      this.call([item], 0, 1)
      return
    }
    this.queue.push(item)
    if (!this.scheduled) {
      this.scheduled = true
      // setImmediate, not nextTick: requests arriving in the same poll phase share one call.
      setImmediate(this.flushBound)
    }
  }

  private flush (): void {
    const queue = this.queue
    this.queue = []
    this.scheduled = false
    let start = 0
    while (start < queue.length) {
      let end = start + 1
      while (end < queue.length && end - start < MAX_ITEMS_PER_CALL && queue[end].clock === queue[start].clock) end++
      this.call(queue, start, end)
      start = end
    }
  }

  /** Sends items[start, end) as one script call; every item gets its own line back. */
  private call (items: readonly BatchItem[], start: number, end: number): void {
    const count = end - start
    const args: string[] = new Array(count * 5 + 1)
    args[2 * count] = this.shared(items[start].clock)
    for (let i = 0; i < count; i++) {
      const item = items[start + i]
      args[2 * i] = item.counters
      args[2 * i + 1] = item.leases
      const at = 2 * count + 1 + 3 * i
      args[at] = item.terms
      args[at + 1] = item.leaseId
      args[at + 2] = item.releasing
    }
    this.script.run(this.client as Redis, args, 2 * count).then((reply: unknown) => {
      const lines = typeof reply === 'string' ? reply.split('\n') : []
      if (lines.length !== count) {
        rejectAll(items, start, end, new StoreReplyError(JSON.stringify(reply)))
        return
      }
      for (let i = 0; i < count; i++) {
        const line = lines[i]
        try {
          if (line.startsWith('E ')) items[start + i].reject(new StoreReplyError(line.slice(2)))
          else items[start + i].resolve(line)
        } catch (err) {
          rethrowLater(err)
        }
      }
    }, (err: unknown) => rejectAll(items, start, end, err))
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
