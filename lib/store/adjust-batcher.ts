// Sends the adjustments of one event-loop turn (settlements after responses, refunds) to Redis as
// one call of lib/lua/adjust-batch.lua, as admissions go together: one script start and one reply
// for many. On a Redis Cluster (one slot per call) each goes alone.
import type { Redis } from 'ioredis'
import { StoreReplyError } from '../errors.js'
import { adjustShared, adjustTerms } from './admit-protocol.js'
import type { LuaScript, RedisClient } from './lua-script.js'
import { MAX_ITEMS_PER_CALL, TurnQueue } from './turn-queue.js'
import type { AdjustRequest, Adjusted } from './types.js'

interface Pending {
  readonly request: AdjustRequest
  readonly resolve: (adjusted: Adjusted) => void
  readonly reject: (err: unknown) => void
}

export class AdjustBatcher {
  private readonly turn = new TurnQueue<Pending>(items => this.flush(items))

  constructor (
    private readonly client: RedisClient,
    private readonly script: LuaScript,
    private readonly batching: boolean,
    private readonly bucketsPerWindow: number,
    /** The store's clock (replays and tests), or undefined for Redis TIME. */
    private readonly clock: (() => number) | undefined
  ) {}

  adjust (request: AdjustRequest): Promise<Adjusted> {
    return new Promise((resolve, reject) => {
      const item = { request, resolve, reject }
      if (this.batching) this.turn.push(item)
      else this.call([item])
    })
  }

  /** One turn's items, charges merged, as calls of at most MAX_ITEMS_PER_CALL items. */
  private flush (items: Pending[]): void {
    const queue = mergeCharges(items)
    for (let start = 0; start < queue.length; start += MAX_ITEMS_PER_CALL) this.call(queue.slice(start, start + MAX_ITEMS_PER_CALL))
  }

  private call (items: Pending[]): void {
    const keys: string[] = []
    const terms: string[] = [adjustShared(this.bucketsPerWindow, this.clock === undefined ? -1 : this.clock())]
    for (const { request } of items) {
      keys.push(request.keys.counters, request.keys.month)
      terms.push(adjustTerms(request))
    }
    this.script.run(this.client as Redis, [...keys, ...terms], keys.length).then((reply) => {
      if (!Array.isArray(reply) || reply.length !== 1 + 4 * items.length) throw new StoreReplyError(JSON.stringify(reply))
      const now = reply[0] as number
      items.forEach((item, i) => {
        const at = 1 + 4 * i
        item.resolve({ now, minute: reply[at], hour: reply[at + 1], month: reply[at + 2], bucketMonth: reply[at + 3] })
      })
    }).catch((err: unknown) => { for (const item of items) item.reject(err) })
  }
}

/**
 * Charges of one turn to the same reservation buckets (settlements of requests admitted in one
 * batch share its instant) go as one item of their summed amount, in the place of the first: a
 * charge is never cut short, so each is answered with its own amount, or 0 where the merged item
 * found no bucket to charge. Refunds, which a bucket may cut short, go one by one, and a refund of a
 * subject ends the merging of its charges (the ones after it go after it).
 */
function mergeCharges (queue: Pending[]): Pending[] {
  if (queue.length < 2) return queue
  const out: Array<Pending | Pending[]> = []
  const open = new Map<string, Pending[]>()
  for (const item of queue) {
    const { request } = item
    if (request.amount <= 0 || request.reservedAt === undefined) {
      for (const [key, group] of open) if (group[0].request.keys.month === request.keys.month) open.delete(key)
      out.push(item)
      continue
    }
    const { keys, counted } = request
    const key = `${keys.counters}\n${keys.month}\n${request.reservedAt}\n${+counted.minute}${+counted.hour}${+counted.month}${+counted.bucketMonth}`
    const group = open.get(key)
    if (group !== undefined) {
      group.push(item)
      continue
    }
    const started = [item]
    open.set(key, started)
    out.push(started)
  }
  return out.map(entry => Array.isArray(entry) ? merged(entry) : entry)
}

/** One item for a group of charges, answering each with its own amount. */
function merged (group: Pending[]): Pending {
  if (group.length === 1) return group[0]
  const amount = group.reduce((sum, item) => sum + item.request.amount, 0)
  return {
    request: { ...group[0].request, amount },
    resolve: (adjusted) => {
      const share = (changed: number, own: number): number => changed === 0 ? 0 : own
      for (const { request, resolve } of group) {
        resolve({
          now: adjusted.now,
          minute: share(adjusted.minute, request.amount),
          hour: share(adjusted.hour, request.amount),
          month: share(adjusted.month, request.amount),
          bucketMonth: share(adjusted.bucketMonth, request.amount)
        })
      }
    },
    reject: (err) => { for (const item of group) item.reject(err) }
  }
}
