// What a consumer group knows in Redis about each event id, beyond the stream's own pending lists:
// - `<stream>:delivered:<group>:<event id>` = "1", set after a 2xx and kept 7 days: a duplicate of a
//   delivered event is acknowledged without being posted again;
// - `<stream>:delivering:<group>:<event id>` = the consumer's name, a lease held while one consumer
//   posts that id, so two consumers holding two copies of one event never both post it.
import type { Redis } from 'ioredis'

/** How long a delivered id is remembered: duplicates come minutes apart, not weeks. */
export const DELIVERED_TTL_SECONDS = 7 * 24 * 60 * 60

export class DeliveryLedger {
  constructor (
    private readonly redis: Redis,
    private readonly stream: string,
    private readonly group: string,
    private readonly consumer: string,
    /** A crashed consumer's lease ends this long after its last renewal. */
    private readonly leaseMs: number
  ) {}

  deliveredKey (eventId: string): string { return `${this.stream}:delivered:${this.group}:${eventId}` }
  leaseKey (eventId: string): string { return `${this.stream}:delivering:${this.group}:${eventId}` }

  async isDelivered (eventId: string): Promise<boolean> {
    return await this.redis.exists(this.deliveredKey(eventId)) === 1
  }

  /** True when this consumer now holds the lease (or held it already: a restart under the same name). */
  async takeLease (eventId: string): Promise<boolean> {
    const key = this.leaseKey(eventId)
    if (await this.redis.set(key, this.consumer, 'PX', this.leaseMs, 'NX') === 'OK') return true
    if (await this.redis.get(key) !== this.consumer) return false
    await this.redis.pexpire(key, this.leaseMs)
    return true
  }

  /**
   * Keeps the lease, and the entry's idle time in the group short, while a delivery goes on (a
   * receiver may be down for an hour): other consumers claim only entries idle longer than a lease.
   * A lease already taken over by another consumer is left to it.
   */
  async renewLease (eventId: string, entryId: string): Promise<void> {
    const key = this.leaseKey(eventId)
    if (await this.redis.get(key) === this.consumer) await this.redis.pexpire(key, this.leaseMs)
    await this.redis.xclaim(this.stream, this.group, this.consumer, 0, entryId, 'JUSTID')
  }

  async releaseLease (eventId: string): Promise<void> {
    const key = this.leaseKey(eventId)
    if (await this.redis.get(key) === this.consumer) await this.redis.del(key)
  }

  /** After a 2xx: the id first, then the entry, so after a crash in between the entry's redelivery finds the id delivered. */
  async recordDelivered (eventId: string, entryId: string): Promise<void> {
    await this.redis.set(this.deliveredKey(eventId), '1', 'EX', DELIVERED_TTL_SECONDS, 'NX')
    await this.acknowledge(entryId)
  }

  async acknowledge (entryId: string): Promise<void> {
    await this.redis.xack(this.stream, this.group, entryId)
  }
}
