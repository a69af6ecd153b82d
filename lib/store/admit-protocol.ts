// The one owner of the admit script's wire format (lib/lua/admit-batch.lua): how a batch's keys and
// arguments are laid out, how limits and releases are written, and how a reply line is read. The
// script's header says the same; a test pins both sides (the script's SHA, and replies read here).
import type { TierLimits } from '../tiers.js'
import type { AdmitOutcome } from './decision.js'
import type { AdjustRequest } from './types.js'

/** What the script needs of one item: its three keys, its terms, the lease it takes and gives back. */
export interface WireItem {
  readonly counters: string
  readonly leases: string
  /** The counters that count the subject's month (`counters` itself for the shared bucket). */
  readonly month: string
  /**
   * `[cost, minute, hour, month, concurrency, bucketMonth]` as JSON, with a 7th element of flags
   * (1 peek, 2 the next item is a further level of the same request), or '' to only give leases back.
   */
  readonly terms: string
  readonly leaseId: string
  /** Lease ids to give back first: '', one id (not starting with '['), or a JSON array of ids. */
  readonly releasing: string
}

/**
 * The arguments of one call for items[start, end): three keys per item, then what the batch shares,
 * then three values per item. Returns them with the number of keys.
 */
export function batchArguments (items: readonly WireItem[], start: number, end: number, shared: string): { args: string[], keys: number } {
  const count = end - start
  const args: string[] = new Array(count * 6 + 1)
  args[3 * count] = shared
  for (let i = 0; i < count; i++) {
    const item = items[start + i]
    args[3 * i] = item.counters
    args[3 * i + 1] = item.leases
    args[3 * i + 2] = item.month
    const at = 3 * count + 1 + 3 * i
    args[at] = item.terms
    args[at + 1] = item.leaseId
    args[at + 2] = item.releasing
  }
  return { args, keys: 3 * count }
}

/**
 * What a batch shares: sub-buckets per window, the lease lifetime, the clock (-1: Redis TIME), the
 * quota alerts' thresholds and how many months usage records outlive their month.
 */
export function sharedTerms (bucketsPerWindow: number, leaseTtlMs: number, clock: number, thresholds: readonly number[] = [], retentionMonths = 3): string {
  return '[' + bucketsPerWindow + ',' + leaseTtlMs + ',' + clock + ',' + JSON.stringify(thresholds) + ',' + retentionMonths + ']'
}

/** A limit as the script takes it: -1 for unlimited. */
function limitArg (limit: number): number {
  return limit === Infinity ? -1 : limit
}

/** Items' terms, with the limits' part written once per limits object (the limiter reuses them). */
export class TermsWriter {
  private readonly byLimits = new WeakMap<TierLimits, string>()

  /**
   * `joinsNext`: the next item is a further level of the same request (decided all or nothing with
   * it). `recorded`: the subject keeps a usage record of its month counts (tenants and organizations).
   */
  terms (limits: TierLimits, cost: number, bucketQuota = Infinity, peek = false, joinsNext = false, recorded = false): string {
    let known = this.byLimits.get(limits)
    if (known === undefined) {
      known = `${limitArg(limits.requestsPerMinute)},${limitArg(limits.requestsPerHour)},${limitArg(limits.monthlyQuota)},${limitArg(limits.concurrentRequests)},`
      this.byLimits.set(limits, known)
    }
    const flags = (peek ? 1 : 0) + (joinsNext ? 2 : 0) + (recorded ? 4 : 0)
    return '[' + cost + ',' + known + limitArg(bucketQuota) + (flags === 0 ? ']' : ',' + flags + ']')
  }
}

/** One adjustment's terms for the adjust script (lib/lua/adjust-batch.lua). */
export function adjustTerms (request: AdjustRequest): string {
  const { counted } = request
  const flag = (on: boolean): number => on ? 1 : 0
  return '[' + request.amount + ',' + (request.reservedAt ?? -1) + ',' + flag(counted.minute) + ',' + flag(counted.hour) + ',' +
    flag(counted.month) + ',' + flag(counted.bucketMonth) + ']'
}

/** What the adjust script's items share: sub-buckets per window and the clock (-1: Redis TIME). */
export function adjustShared (bucketsPerWindow: number, clock: number): string {
  return '[' + bucketsPerWindow + ',' + clock + ']'
}

/** Lease ids to give back, as the script takes them: one id alone, several as a JSON array. */
export function releasingArg (ids: readonly string[]): string {
  return ids.length === 1 && ids[0] !== '' && !ids[0].startsWith('[') ? ids[0] : JSON.stringify(ids)
}

const SPACE = 32
const MINUS = 45
const ZERO = 48
const LOWER_Q = 113
const LOWER_B = 98

/**
 * Reads one reply line of an admitted or refused item ('0 0 1764236000123 3 3 3 1 0'): eight
 * integers separated by single spaces. Undefined when it is anything else. Parsed in place: no
 * substrings, no array of strings.
 */
export function readOutcome (line: unknown): AdmitOutcome | undefined {
  if (typeof line !== 'string') return undefined
  const out: number[] = []
  let value = 0
  let sign = 1
  let digits = 0
  for (let i = 0; i <= line.length; i++) {
    const c = i === line.length ? SPACE : line.charCodeAt(i)
    if (c === SPACE) {
      if (digits === 0) return undefined
      out.push(sign * value)
      value = 0
      sign = 1
      digits = 0
    } else if (c === MINUS && digits === 0 && sign === 1) {
      sign = -1
    } else if (c >= ZERO && c <= ZERO + 9) {
      value = value * 10 + (c - ZERO)
      digits++
    } else if ((c === LOWER_Q || c === LOWER_B) && digits === 0 && sign === 1 && out.length === 8) {
      break // the thresholds crossed follow (readCrossings)
    } else {
      return undefined
    }
  }
  return out.length === 8 ? out as unknown as AdmitOutcome : undefined
}

/** Thresholds an admission crossed, as a reply line reports them after its eight integers. */
export interface LineCrossings {
  /** Of the subject's monthly quota. */
  readonly quota: readonly number[]
  /** Of the bucket's own monthly cap. */
  readonly bucket: readonly number[]
}

/** The thresholds crossed that a reply line reports (' q0.8,0.9 b1'); undefined when none (most lines). */
export function readCrossings (line: string): LineCrossings | undefined {
  const q = line.indexOf(' q')
  const b = line.indexOf(' b')
  if (q === -1 && b === -1) return undefined
  const list = (at: number): number[] => {
    if (at === -1) return []
    const end = line.indexOf(' ', at + 2)
    return line.slice(at + 2, end === -1 ? undefined : end).split(',').map(Number)
  }
  return { quota: list(q), bucket: list(b) }
}
