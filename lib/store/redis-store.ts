// The distributed store: one EVALSHA per admission against a Redis node or Cluster.
import type { StoreKeys } from '../keys.js'
import { decodeDecision, limitArg, type AdmitReply } from './decision.js'
import { LuaScript, type RedisClient } from './lua-script.js'
import { HOUR_MS, MINUTE_MS, type AdmitRequest, type Decision, type RateLimitStore, type WindowSettings } from './types.js'
import { StoreReplyError } from '../errors.js'

export const ADMIT_SCRIPT = new LuaScript('admit-2')

export interface RedisStoreOptions extends Partial<WindowSettings> {
  /** An ioredis client or Cluster. The store never closes it. */
  client: RedisClient
  /**
   * Replays and tests only: use this time (Unix ms) instead of Redis TIME. In production leave it
   * unset, so every instance shares Redis's clock.
   */
  clock?: () => number
}

export class RedisStore implements RateLimitStore {
  readonly kind = 'redis' as const
  readonly client: RedisClient
  readonly settings: WindowSettings
  private readonly clock: (() => number) | undefined

  constructor (options: RedisStoreOptions) {
    this.client = options.client
    this.settings = {
      bucketsPerWindow: options.bucketsPerWindow ?? 20,
      leaseTtlMs: options.leaseTtlMs ?? 60_000
    }
    this.clock = options.clock
  }

  async admit (request: AdmitRequest): Promise<Decision> {
    const { keys, limits } = request
    const reply = await ADMIT_SCRIPT.run(this.client, [
      keys.counters, keys.leases,
      request.cost,
      limitArg(limits.requestsPerMinute), limitArg(limits.requestsPerHour),
      limitArg(limits.monthlyQuota), limitArg(limits.concurrentRequests),
      request.leaseId, this.settings.leaseTtlMs,
      MINUTE_MS, HOUR_MS, this.settings.bucketsPerWindow,
      this.clock === undefined ? '' : this.clock()
    ])
    if (!Array.isArray(reply) || reply.length !== 11) throw new StoreReplyError(JSON.stringify(reply))
    return decodeDecision(reply as unknown as AdmitReply, limits)
  }

  release (keys: StoreKeys, leaseId: string): void {
    // Not awaited: the response is already on its way. A lost release is healed by the lease's expiry.
    this.client.zrem(keys.leases, leaseId).catch(noop)
  }

  async close (): Promise<void> {
    // The client belongs to whoever created it.
  }
}

function noop (): void {}
