// What each tenant's extractor reported on its latest request (its tier; the same class also keeps a
// tenant's organization and an organization's tier), so that usage() and resolve() without a tier
// report what a subject is really held to. The request path pays one Map lookup and a compare; only
// a change is written to Redis, batched (at most one write per id per flush period), pipelined and
// never awaited by a request.
import type { FastifyBaseLogger } from 'fastify'
import { withDeadline } from '../deadline.js'
import type { RedisClient } from '../store/lua-script.js'

/** The extractor reported no tier: the stored tenant tier or the default tier applies. */
export const NO_TIER = ''
/** The extractor reported no organization: the tenant's keys are its own. */
export const NO_ORGANIZATION = ''

/** Above this many tenants the local map starts again (Redis still holds what was written). */
const MAX_TENANTS = 50_000
/** The longest tenant id the policy methods take. */
const MAX_TENANT_ID = 1024
/** Changes wait this long to be written together. */
const FLUSH_MS = 1000
/** A batch this large is written at once. */
const MAX_PENDING = 1000
/** A read (usage, resolve) waits this long for Redis, then goes on as if nothing was seen. */
const READ_TIMEOUT_MS = 1000

export class SeenTiers {
  private readonly latest = new Map<string, string>()
  private pending = new Map<string, string>()
  private timer: NodeJS.Timeout | undefined
  private failing = false
  private writes: Promise<void> = Promise.resolve()
  /** Batches that could not be written. */
  failures = 0

  constructor (
    private readonly client: RedisClient | undefined,
    /** The Redis hash: id → what was seen (a field name holds any id as it is). */
    readonly key: string,
    private readonly log: Pick<FastifyBaseLogger, 'warn'> | undefined,
    /** What is recorded, for the log: `the tiers tenants were seen with`. */
    private readonly what = 'the tiers tenants were seen with'
  ) {}

  /** Request path: remembers the tier a tenant's extractor reported (NO_TIER: none). */
  note (tenantId: string, tier: string): void {
    if (this.latest.get(tenantId) === tier) return
    if (tenantId.length > MAX_TENANT_ID) return // no policy call could name it either
    if (this.latest.size >= MAX_TENANTS && !this.latest.has(tenantId)) this.latest.clear()
    this.latest.set(tenantId, tier)
    if (this.client === undefined) return
    this.pending.set(tenantId, tier)
    if (this.pending.size >= MAX_PENDING) this.flush()
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), FLUSH_MS)
      this.timer.unref()
    }
  }

  /** The tier last seen for a tenant: this process's memory first, then what any instance wrote. */
  async read (tenantId: string): Promise<string | undefined> {
    const local = this.latest.get(tenantId)
    if (local !== undefined || this.client === undefined) return local
    try {
      return (await withDeadline(this.client.hget(this.key, tenantId), READ_TIMEOUT_MS, 'Redis')) ?? undefined
    } catch {
      return undefined // Redis away: as if never seen
    }
  }

  /** Writes what is pending; errors are counted and logged once per outage, never thrown. */
  flush (): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.client === undefined || this.pending.size === 0) return this.writes
    const batch = this.pending
    this.pending = new Map()
    const set: string[] = []
    const removed: string[] = []
    for (const [tenantId, tier] of batch) {
      if (tier === NO_TIER) removed.push(tenantId)
      else set.push(tenantId, tier)
    }
    const pipeline = this.client.pipeline()
    if (set.length > 0) pipeline.hset(this.key, ...set)
    if (removed.length > 0) pipeline.hdel(this.key, ...removed)
    const written = pipeline.exec().then(results => {
      const failed = results?.find(([err]) => err !== null)
      if (failed !== undefined) throw failed[0]
      this.failing = false
    }).catch((err: unknown) => this.failed(err, batch))
    this.writes = Promise.all([this.writes, written]).then(() => {})
    return this.writes
  }

  /** Writes what is pending; waits for the writes under way, at most `timeoutMs` (Redis may be away). */
  async close (timeoutMs = 500): Promise<void> {
    await withDeadline(this.flush(), timeoutMs, 'Redis').catch(() => {})
  }

  private failed (err: unknown, batch: Map<string, string>): void {
    this.failures++
    // Forget what was not written, so the tenant's next request writes it again.
    for (const [tenantId, tier] of batch) if (this.latest.get(tenantId) === tier) this.latest.delete(tenantId)
    if (this.failing) return
    this.failing = true
    this.log?.warn({ err }, `rate limiting: could not record ${this.what}; usage() may report older ones until Redis answers`)
  }
}
