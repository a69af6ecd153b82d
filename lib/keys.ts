// Redis key layout. Every key of one tenant (and bucket) carries the same hash tag, so a script
// touches one Redis Cluster slot; a tenant of an organization carries its organization's tag, so the
// tenant's and the organization's counters are decided by one script call there too. Ids are
// encoded so that no id can inject a brace, collide with another id, or make a key longer than a
// fixed bound.
import { createHash } from 'node:crypto'
import { TwoKeyCache } from './bounded-cache.js'

/** Ids made only of these characters (and at most 64 of them) are used as they are. */
const PLAIN_ID = /^[A-Za-z0-9_.:@-]{1,64}$/

/** Bumped whenever the layout or the meaning of stored values changes. */
export const KEY_LAYOUT_VERSION = 'v1'

/**
 * Encodes an id for use inside a key. Plain ids stay readable; anything else (empty, long, braces,
 * `*`, newlines, unicode…) becomes `~` + 192 bits of SHA-256. `~` never occurs in a plain id, so the
 * two forms cannot collide. The hash reads UTF-16 code units, so even lone surrogates stay distinct.
 */
export function encodeId (id: string): string {
  if (PLAIN_ID.test(id)) return id
  return '~' + createHash('sha256').update(Buffer.from(id, 'utf16le')).digest('base64url').slice(0, 32)
}

/**
 * Who is counted: a known tenant, an anonymous client keyed by its address, an organization (the
 * sum of its tenants) or a shared route budget (every caller of the routes naming it).
 */
export type SubjectKind = 'tenant' | 'anonymous' | 'organization' | 'route'

export interface StoreKeys {
  /** Hash of one bucket's window buckets (and its own month's count, when a route caps it). */
  readonly counters: string
  /** Hash of concurrency leases: lease id → expiry (ms). */
  readonly leases: string
  /**
   * The hash that counts the subject's month, whatever the bucket: the subject's shared counters
   * (the same key as `counters` for the shared bucket).
   */
  readonly month: string
}

/**
 * The part of every key of one subject, whatever the bucket:
 * - a tenant `<prefix>:v1:{t:<id>}:`, or `<prefix>:v1:{o:<organization>}:t:<id>/` in an organization;
 * - an organization `<prefix>:v1:{o:<id>}:org/`;
 * - an anonymous client `<prefix>:v1:{a:<id>}:`, a shared route budget `<prefix>:v1:{r:<name>}:`.
 * An encoded id never holds `/` nor a brace, so no base is the start of another subject's.
 */
export function subjectBase (prefix: string, kind: SubjectKind, id: string, organizationId?: string): string {
  const root = `${prefix}:${KEY_LAYOUT_VERSION}:`
  switch (kind) {
    case 'tenant':
      return organizationId === undefined ? `${root}{t:${encodeId(id)}}:` : `${root}{o:${encodeId(organizationId)}}:t:${encodeId(id)}/`
    case 'organization':
      return `${root}{o:${encodeId(id)}}:org/`
    case 'route':
      return `${root}{r:${encodeId(id)}}:`
    default:
      return `${root}{a:${encodeId(id)}}:`
  }
}

/** The subject base of a subject's keys (see subjectBase). */
export function subjectBaseOf (keys: StoreKeys): string {
  return keys.month.slice(0, -'all:n'.length)
}

/**
 * Where one subject's counters live for one bucket (`undefined` = the subject's shared counters);
 * `organizationId`: the organization of a tenant.
 */
export function storeKeys (prefix: string, kind: SubjectKind, id: string, bucket: string | undefined, organizationId?: string): StoreKeys {
  const subject = subjectBase(prefix, kind, id, organizationId)
  const base = subject + (bucket === undefined ? 'all' : 'b.' + encodeId(bucket))
  return { counters: base + ':n', leases: base + ':c', month: subject + 'all:n' }
}

/**
 * The hash of the tier each tenant was last seen with: tenant id → tier name. One hash tag, so a
 * batch of changes is one command on one Redis Cluster slot; a hash field holds any id as it is.
 */
export function seenTiersKey (prefix: string): string {
  return `${prefix}:${KEY_LAYOUT_VERSION}:{seen-tiers}`
}

const SCOPES: Record<SubjectKind, string> = { tenant: ' t', anonymous: ' a', organization: ' o', route: ' r' }

/** Above this many subjects a key cache starts again (about 10 MB of keys at most). */
const MAX_CACHED_KEYS = 50_000

/**
 * storeKeys, remembered per subject and bucket: the request path finds a subject's keys with two
 * map lookups instead of encoding and joining them again.
 */
export class KeyCache {
  private readonly cache = new TwoKeyCache<StoreKeys>(MAX_CACHED_KEYS)

  constructor (private readonly prefix: string) {}

  get (kind: SubjectKind, id: string, bucket: string | undefined, organizationId?: string): StoreKeys {
    // The kind takes two characters and an organization goes with its length, so no two kinds,
    // organizations and buckets share a scope.
    const scope = SCOPES[kind] + (organizationId === undefined ? '' : organizationId.length + ' ' + organizationId) +
      (bucket === undefined ? '' : ' ' + bucket)
    let keys = this.cache.get(scope, id)
    if (keys === undefined) {
      keys = storeKeys(this.prefix, kind, id, bucket, organizationId)
      this.cache.set(scope, id, keys)
    }
    return keys
  }
}

/** A key prefix may not contain braces (they would break the hash tag) nor spaces. */
export const KEY_PREFIX_PATTERN = '^[^{}\\s]{1,64}$'
