// Where policies live: a Redis hash shared by every instance (changes announced over pub/sub), or
// this process alone when there is no Redis.
import type { Redis } from 'ioredis'
import { KEY_LAYOUT_VERSION } from '../keys.js'
import { LuaScript, type RedisClient } from '../store/lua-script.js'
import type { StoredEntry } from './policy-state.js'

export const POLICY_WRITE_SCRIPT = new LuaScript('policy-write-1')

export interface ChangeNotice { readonly field: string, readonly entry: StoredEntry }

export interface PolicyBackend {
  /** Stores (value defined) or removes a field; `onlyIfVersion` makes it conditional. Undefined when skipped. */
  write (field: string, value: unknown, lifetimeMs: number | null, onlyIfVersion?: number): Promise<ChangeNotice | undefined>
  snapshot (): Promise<{ version: number, entries: Map<string, StoredEntry> }>
  /** Starts delivering other instances' changes; `onReconnect` runs when notices may have been missed. */
  subscribe (onChange: (notice: ChangeNotice) => void, onReconnect: () => void): Promise<void>
  close (): Promise<void>
}

function toEntry (v: number, raw: { expiresAt?: number | null, value?: unknown } | null): StoredEntry {
  return { v, expiresAt: raw?.expiresAt ?? null, value: raw === null ? undefined : raw.value }
}

export class RedisPolicyBackend implements PolicyBackend {
  readonly key: string
  readonly channel: string
  private subscriber: RedisClient | undefined

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
    return { field, entry: toEntry(reply[0], JSON.parse(reply[1])) }
  }

  async snapshot (): Promise<{ version: number, entries: Map<string, StoredEntry> }> {
    const raw = await this.client.hgetall(this.key)
    const entries = new Map<string, StoredEntry>()
    let version = 0
    for (const [field, json] of Object.entries(raw)) {
      if (field === '__version') {
        version = Number(json)
        continue
      }
      try {
        const parsed = JSON.parse(json) as { v: number, expiresAt: number | null, value: unknown }
        entries.set(field, toEntry(parsed.v, parsed))
      } catch {
        // A field this version cannot read is skipped, not fatal.
      }
    }
    return { version, entries }
  }

  async subscribe (onChange: (notice: ChangeNotice) => void, onReconnect: () => void): Promise<void> {
    // The subscriber queues its SUBSCRIBE until connected, whatever the main client's settings.
    const subscriber = ('nodes' in this.client
      ? this.client.duplicate(undefined, { enableOfflineQueue: true })
      : this.client.duplicate({ enableOfflineQueue: true, maxRetriesPerRequest: null })) as Redis
    this.subscriber = subscriber
    subscriber.on('error', () => {}) // reconnects by itself; the periodic reload covers the gap
    subscriber.on('ready', onReconnect)
    subscriber.on('message', (_channel: string, message: string) => {
      try {
        const notice = JSON.parse(message) as { v: number, field: string, entry: { expiresAt: number | null, value: unknown } | null }
        onChange({ field: notice.field, entry: toEntry(notice.v, notice.entry) })
      } catch {
        // Not ours or not readable: ignore.
      }
    })
    await subscriber.subscribe(this.channel)
  }

  async close (): Promise<void> {
    this.subscriber?.disconnect()
    this.subscriber = undefined
  }
}

/** Policies of this process only (no Redis). */
export class LocalPolicyBackend implements PolicyBackend {
  private version = 0
  private readonly entries = new Map<string, StoredEntry>()

  async write (field: string, value: unknown, lifetimeMs: number | null, onlyIfVersion?: number): Promise<ChangeNotice | undefined> {
    if (onlyIfVersion !== undefined && this.entries.get(field)?.v !== onlyIfVersion) return undefined
    const v = ++this.version
    const entry = toEntry(v, value === undefined ? null : { value, expiresAt: lifetimeMs === null ? null : Date.now() + lifetimeMs })
    if (value === undefined) this.entries.delete(field)
    else this.entries.set(field, entry)
    return { field, entry }
  }

  async snapshot (): Promise<{ version: number, entries: Map<string, StoredEntry> }> {
    return { version: this.version, entries: new Map(this.entries) }
  }

  async subscribe (): Promise<void> {}
  async close (): Promise<void> {}
}
