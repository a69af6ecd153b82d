// Where policies live: a Redis hash shared by every instance (changes announced over pub/sub), or
// this process alone when there is no Redis. This file and policy-write-1.lua own the stored format:
// every entry read is checked here (lib/policies/schemas.ts), and one that does not fit is not
// handed on as a policy.
import type { Redis } from 'ioredis'
import { KEY_LAYOUT_VERSION } from '../keys.js'
import { LuaScript, type RedisClient } from '../store/lua-script.js'
import type { StoredEntry } from './policy-state.js'
import { storedEntryProblem } from './schemas.js'

export const POLICY_WRITE_SCRIPT = new LuaScript('policy-write-1')

/** A stored entry that cannot be applied: why, and its version when that could be read. */
export interface InvalidEntry { readonly field: string, readonly v: number | undefined, readonly problem: string }

/** A change. An unfit entry comes as a removal at its version (so every instance drops it), with `invalid` set. */
export interface ChangeNotice { readonly field: string, readonly entry: StoredEntry, readonly invalid?: InvalidEntry }

export interface Snapshot {
  /** The store's latest version. */
  readonly version: number
  /** Every entry that can be applied; unfit ones are left out, as if absent. */
  readonly entries: Map<string, StoredEntry>
  readonly invalid: InvalidEntry[]
}

export interface PolicyBackend {
  /** Stores (value defined) or removes a field; `onlyIfVersion` makes it conditional. Undefined when skipped. */
  write (field: string, value: unknown, lifetimeMs: number | null, onlyIfVersion?: number): Promise<ChangeNotice | undefined>
  snapshot (): Promise<Snapshot>
  /**
   * Starts delivering other instances' changes; `onMissed` runs when notices may have been missed
   * (a reconnect) or one could not be read.
   */
  subscribe (onChange: (notice: ChangeNotice) => void, onMissed: () => void): Promise<void>
  close (): Promise<void>
}

/** A change to `field` at version `v`; `stored` is the entry as stored (parsed JSON), or null for a removal. */
function noticeOf (field: string, v: number, stored: unknown): ChangeNotice {
  const removal = { v, expiresAt: null, value: undefined }
  if (stored === null) return { field, entry: removal }
  const problem = storedEntryProblem(field, stored)
  if (problem !== undefined) return { field, entry: removal, invalid: { field, v, problem } }
  const { expiresAt, value } = stored as StoredEntry
  return { field, entry: { v, expiresAt, value } }
}

/** The version of an announced change, when it is one: a whole number from 1 on. */
function versionOf (v: unknown): number | undefined {
  return Number.isSafeInteger(v) && (v as number) > 0 ? v as number : undefined
}

export class RedisPolicyBackend implements PolicyBackend {
  readonly key: string
  readonly channel: string
  private subscriber: RedisClient | undefined
  private onClientReady: (() => void) | undefined

  constructor (private readonly client: RedisClient, keyPrefix: string) {
    // One hash tag for every policy key, so the write script stays on one Cluster slot.
    this.key = `${keyPrefix}:${KEY_LAYOUT_VERSION}:{policies}`
    this.channel = `${keyPrefix}:${KEY_LAYOUT_VERSION}:policies`
  }

  async write (field: string, value: unknown, lifetimeMs: number | null, onlyIfVersion?: number): Promise<ChangeNotice | undefined> {
    const reply = await POLICY_WRITE_SCRIPT.run(this.client, [
      this.key, field, value === undefined ? '' : JSON.stringify(value), lifetimeMs === null ? '' : Math.ceil(lifetimeMs),
      this.channel, JSON.stringify(field), onlyIfVersion === undefined ? '' : onlyIfVersion
    ]) as [number, string]
    if (reply[0] === 0) return undefined
    return noticeOf(field, reply[0], JSON.parse(reply[1]))
  }

  async snapshot (): Promise<Snapshot> {
    const raw = await this.client.hgetall(this.key)
    const entries = new Map<string, StoredEntry>()
    const invalid: InvalidEntry[] = []
    let version = 0
    for (const [field, json] of Object.entries(raw)) {
      if (field === '__version') {
        version = versionOf(Number(json)) ?? 0
        continue
      }
      let stored: unknown
      try {
        stored = JSON.parse(json)
      } catch {
        invalid.push({ field, v: undefined, problem: 'entry is not JSON' })
        continue
      }
      const problem = storedEntryProblem(field, stored)
      if (problem !== undefined) {
        invalid.push({ field, v: versionOf((stored as { v?: unknown } | null)?.v), problem })
        continue
      }
      const { v, expiresAt, value } = stored as StoredEntry
      entries.set(field, { v, expiresAt, value })
    }
    return { version, entries, invalid }
  }

  async subscribe (onChange: (notice: ChangeNotice) => void, onMissed: () => void): Promise<void> {
    // The subscriber queues its SUBSCRIBE until connected, whatever the main client's settings.
    const subscriber = ('nodes' in this.client
      ? this.client.duplicate(undefined, { enableOfflineQueue: true })
      : this.client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null })) as Redis
    this.subscriber = subscriber
    subscriber.on('error', () => {}) // reconnects by itself; the periodic reload covers the gap
    subscriber.on('ready', onMissed)
    // The reload reads through the main client: when it reconnects after the subscriber (each backs
    // off on its own), only a reload then sees the restarted store at once.
    this.onClientReady = onMissed
    this.client.on('ready', onMissed)
    subscriber.on('message', (_channel: string, message: string) => {
      let notice: { v?: unknown, field?: unknown, entry?: unknown } | null
      try {
        notice = JSON.parse(message)
      } catch {
        notice = null
      }
      const v = versionOf(notice?.v)
      // A notice that says neither what changed nor at which version cannot be followed.
      if (v === undefined || typeof notice?.field !== 'string' || notice.entry === undefined) return onMissed()
      onChange(noticeOf(notice.field, v, notice.entry))
    })
    await subscriber.subscribe(this.channel)
  }

  async close (): Promise<void> {
    this.subscriber?.disconnect()
    this.subscriber = undefined
    // The client belongs to whoever created it: only our listener goes.
    if (this.onClientReady !== undefined) this.client.off('ready', this.onClientReady)
    this.onClientReady = undefined
  }
}

/** Policies of this process only (no Redis). */
export class LocalPolicyBackend implements PolicyBackend {
  private version = 0
  private readonly entries = new Map<string, StoredEntry>()

  async write (field: string, value: unknown, lifetimeMs: number | null, onlyIfVersion?: number): Promise<ChangeNotice | undefined> {
    if (onlyIfVersion !== undefined && this.entries.get(field)?.v !== onlyIfVersion) return undefined
    const v = ++this.version
    const entry = { v, expiresAt: lifetimeMs === null ? null : Date.now() + lifetimeMs, value }
    if (value === undefined) this.entries.delete(field)
    else this.entries.set(field, entry)
    return { field, entry }
  }

  async snapshot (): Promise<Snapshot> {
    return { version: this.version, entries: new Map(this.entries), invalid: [] }
  }

  async subscribe (): Promise<void> {}
  async close (): Promise<void> {}
}
