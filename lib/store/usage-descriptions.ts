// Who a usage record belongs to (its real id, scope and tier), written next to the counts the
// admission script keeps in it: batched, once per subject and month per process, never awaited by
// a request. A record the script never counts in (a subject without a monthly quota) still expires.
import { withDeadline } from '../deadline.js'
import type { RedisClient } from './lua-script.js'

/** What the usage report says about a subject. */
export interface UsageDescription {
  readonly scope: 'tenant' | 'organization'
  readonly id: string
  readonly tier: string | null
  /** A bucket the subject counts a capped month in, by its name as keys encode it (when that differs). */
  readonly bucket?: { readonly encoded: string, readonly name: string }
}

/** The record's fields that name the subject (and a bucket whose name its key had to encode). */
function fieldsOf ({ scope, id, tier, bucket }: UsageDescription): string[] {
  const fields = ['id', id, 'scope', scope, 'tier', tier ?? '']
  if (bucket !== undefined) fields.push('bn:' + bucket.encoded, bucket.name)
  return fields
}

/** Descriptions wait this long to be written together. */
const FLUSH_MS = 1000
const MAX_PENDING = 1000

export class UsageDescriptions {
  private pending = new Map<string, UsageDescription & { readonly expiresAt: number }>()
  private timer: NodeJS.Timeout | undefined

  constructor (private readonly client: RedisClient) {}

  /** `usageKey` (a subject's record of one month) belongs to this subject; kept until `expiresAt`. */
  describe (usageKey: string, description: UsageDescription, expiresAt: number): void {
    // Two descriptions of one record in a batch (its shared counters and a bucket): one write.
    const bucket = description.bucket ?? this.pending.get(usageKey)?.bucket
    this.pending.set(usageKey, { ...description, ...(bucket === undefined ? {} : { bucket }), expiresAt })
    if (this.pending.size >= MAX_PENDING) this.flush()
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), FLUSH_MS)
      this.timer.unref()
    }
  }

  /** Writes what is pending; a failure is not retried (the next month's first request writes again). */
  flush (): Promise<void> {
    clearTimeout(this.timer)
    this.timer = undefined
    if (this.pending.size === 0) return Promise.resolve()
    const batch = this.pending
    this.pending = new Map()
    const { client } = this
    // On a Cluster the records live on every master: a command each (a pipeline holds one slot).
    if ('nodes' in client) {
      return Promise.all([...batch].map(async ([key, description]) => {
        await client.hset(key, ...fieldsOf(description))
        await client.pexpireat(key, description.expiresAt)
      })).then(() => {}, () => {})
    }
    const pipeline = client.pipeline()
    for (const [key, description] of batch) {
      pipeline.hset(key, ...fieldsOf(description))
      pipeline.pexpireat(key, description.expiresAt)
    }
    return pipeline.exec().then(() => {}, () => {})
  }

  async close (timeoutMs = 500): Promise<void> {
    await withDeadline(this.flush(), timeoutMs, 'Redis').catch(() => {})
  }
}
