// In-process store with the same semantics as the Redis script (lib/lua/admit-batch.lua), step for step,
// so one conformance suite holds both to the same answers. For one process only: counters are not
// shared between instances.
import type { StoreKeys } from '../keys.js'
import { MonthCache } from './calendar.js'
import { decodeDecision, limitArg, type AdmitReply } from './decision.js'
import { HOUR_MS, MINUTE_MS, type AdmitRequest, type Decision, type RateLimitStore, type Usage, type WindowSettings } from './types.js'

export interface MemoryStoreOptions extends Partial<WindowSettings> {
  /** Time source in Unix ms (tests and replays); defaults to `Date.now`. */
  clock?: () => number
  /** How often expired entries are swept, in ms. */
  sweepIntervalMs?: number
}

interface Counters { readonly fields: Map<string, number>, expiresAt: number }
interface Leases { readonly members: Map<string, number>, expiresAt: number }

export class MemoryStore implements RateLimitStore {
  readonly kind = 'memory' as const
  readonly settings: WindowSettings
  private readonly clock: () => number
  private readonly counters = new Map<string, Counters>()
  private readonly leases = new Map<string, Leases>()
  private readonly sweeper: NodeJS.Timeout
  private readonly months = new MonthCache()

  constructor (options: MemoryStoreOptions = {}) {
    this.settings = {
      bucketsPerWindow: options.bucketsPerWindow ?? 20,
      leaseTtlMs: options.leaseTtlMs ?? 60_000
    }
    this.clock = options.clock ?? Date.now
    // Without a sweep, ids seen once would stay in memory for the rest of the month.
    this.sweeper = setInterval(() => this.sweep(), options.sweepIntervalMs ?? 30_000)
    this.sweeper.unref()
  }

  async admit (request: AdmitRequest): Promise<Decision> {
    return decodeDecision(this.decide(request), request.limits, this.settings.bucketsPerWindow, this.months)
  }

  release (keys: StoreKeys, leaseId: string): void {
    this.leases.get(keys.leases)?.members.delete(leaseId)
  }

  async renewLeases (leases: ReadonlyArray<{ readonly keys: StoreKeys, readonly id: string }>): Promise<void> {
    const expiry = this.clock() + this.settings.leaseTtlMs
    for (const { keys, id } of leases) {
      const entry = this.leases.get(keys.leases)
      if (entry === undefined || !entry.members.has(id)) continue
      entry.members.set(id, expiry)
      entry.expiresAt = Math.max(entry.expiresAt, expiry)
    }
  }

  async usage (keys: StoreKeys): Promise<Usage> {
    const now = this.clock()
    const k = this.settings.bucketsPerWindow
    const oldestM = Math.floor(now / (MINUTE_MS / k)) - k
    const oldestH = Math.floor(now / (HOUR_MS / k)) - k
    const { id: monthId, end: monthResetAt } = this.months.of(now)
    let minute = 0
    let hour = 0
    let month = 0
    const counters = this.counters.get(keys.counters)
    if (counters !== undefined && counters.expiresAt > now) {
      for (const [field, n] of counters.fields) {
        const idx = Number(field.slice(1))
        if (field[0] === 'm' && idx >= oldestM) minute += n
        else if (field[0] === 'h' && idx >= oldestH) hour += n
        else if (field[0] === 'q' && idx === monthId) month = n
      }
    }
    let inFlight = 0
    for (const expiry of this.leases.get(keys.leases)?.members.values() ?? []) if (expiry > now) inFlight++
    return { now, minute, hour, month, inFlight, monthResetAt }
  }

  async resetSubject (subjectBase: string): Promise<void> {
    for (const key of this.counters.keys()) if (key.startsWith(subjectBase)) this.counters.delete(key)
    for (const key of this.leases.keys()) if (key.startsWith(subjectBase)) this.leases.delete(key)
  }

  async close (): Promise<void> {
    clearInterval(this.sweeper)
    this.counters.clear()
    this.leases.clear()
  }

  /** Number of live entries (counters and lease sets); for tests of the sweep. */
  get size (): number {
    return this.counters.size + this.leases.size
  }

  /** Drops every expired entry. */
  sweep (): void {
    const now = this.clock()
    for (const [key, entry] of this.counters) if (entry.expiresAt <= now) this.counters.delete(key)
    for (const [key, entry] of this.leases) {
      for (const [member, expiry] of entry.members) if (expiry <= now) entry.members.delete(member)
      if (entry.expiresAt <= now || entry.members.size === 0) this.leases.delete(key)
    }
  }

  // Mirrors admit-batch.lua; keep the two in step.
  private decide (request: AdmitRequest): AdmitReply {
    const { cost, limits } = request
    const limM = limitArg(limits.requestsPerMinute)
    const limH = limitArg(limits.requestsPerHour)
    const limQ = limitArg(limits.monthlyQuota)
    const limC = limitArg(limits.concurrentRequests)
    const { bucketsPerWindow: k, leaseTtlMs } = this.settings
    const now = this.clock()

    const { id: monthId, end: monthEnd } = this.months.of(now)
    const gM = MINUTE_MS / k
    const gH = HOUR_MS / k
    const curM = Math.floor(now / gM)
    const curH = Math.floor(now / gH)
    const oldestM = curM - k
    const oldestH = curH - k

    let counters = this.counters.get(request.keys.counters)
    if (counters !== undefined && counters.expiresAt <= now) {
      this.counters.delete(request.keys.counters)
      counters = undefined
    }

    let usedM = 0
    let usedH = 0
    let usedQ = 0
    const byM = new Map<number, number>()
    const byH = new Map<number, number>()
    const stale: string[] = []
    let keepUntil = 0
    if (counters !== undefined) {
      for (const [field, n] of counters.fields) {
        const kind = field[0]
        const idx = Number(field.slice(1))
        if (kind === 'm' && idx >= oldestM) {
          usedM += n
          byM.set(idx, n)
          keepUntil = Math.max(keepUntil, (idx + k + 1) * gM)
        } else if (kind === 'h' && idx >= oldestH) {
          usedH += n
          byH.set(idx, n)
          keepUntil = Math.max(keepUntil, (idx + k + 1) * gH)
        } else if (kind === 'q' && idx === monthId) {
          usedQ = n
          keepUntil = Math.max(keepUntil, monthEnd)
        } else {
          stale.push(field)
        }
      }
    }

    const waitFor = (byIdx: Map<number, number>, oldest: number, cur: number, need: number, g: number): number => {
      let freed = 0
      for (let idx = oldest; idx <= cur; idx++) {
        const n = byIdx.get(idx)
        if (n !== undefined) {
          freed += n
          if (freed >= need) return (idx + k + 1) * g - now
        }
      }
      return -1
    }

    let reason = 0
    let retry = 0
    if (limQ >= 0 && usedQ + cost > limQ) {
      reason = 3
      retry = monthEnd - now
    }
    if (limH >= 0 && usedH + cost > limH) {
      let w = waitFor(byH, oldestH, curH, usedH + cost - limH, gH)
      if (w < 0) w = HOUR_MS
      if (reason === 0) reason = 1
      retry = Math.max(retry, w)
    }
    if (limM >= 0 && usedM + cost > limM) {
      let w = waitFor(byM, oldestM, curM, usedM + cost - limM, gM)
      if (w < 0) w = MINUTE_MS
      if (reason === 0) reason = 1
      retry = Math.max(retry, w)
    }

    let inFlight = 0
    let leases = this.leases.get(request.keys.leases)
    if (limC >= 0) {
      inFlight = leases?.members.size ?? 0
      if (leases !== undefined && inFlight + 1 > limC) {
        // Only a full set needs its expired leases (crashed processes) dropped.
        for (const [member, expiry] of leases.members) if (expiry <= now) leases.members.delete(member)
        inFlight = leases.members.size
      }
      if (inFlight + 1 > limC) {
        if (reason === 0) reason = 2
        let w = 1000
        if (leases !== undefined && leases.members.size > 0) w = Math.min(w, Math.min(...leases.members.values()) - now)
        retry = Math.max(retry, w)
      }
    }

    if (reason === 0) {
      const wrote = limM >= 0 || limH >= 0 || limQ >= 0
      if (wrote && counters === undefined) {
        counters = { fields: new Map(), expiresAt: Infinity }
        this.counters.set(request.keys.counters, counters)
      }
      if (counters !== undefined) {
        const fields = counters.fields
        if (limM >= 0) {
          const n = (fields.get('m' + curM) ?? 0) + cost
          fields.set('m' + curM, n)
          byM.set(curM, n)
          usedM += cost
          keepUntil = Math.max(keepUntil, (curM + k + 1) * gM)
        }
        if (limH >= 0) {
          const n = (fields.get('h' + curH) ?? 0) + cost
          fields.set('h' + curH, n)
          byH.set(curH, n)
          usedH += cost
          keepUntil = Math.max(keepUntil, (curH + k + 1) * gH)
        }
        if (limQ >= 0) {
          usedQ = (fields.get('q' + monthId) ?? 0) + cost
          fields.set('q' + monthId, usedQ)
          keepUntil = Math.max(keepUntil, monthEnd)
        }
        for (const field of stale) fields.delete(field)
        if (wrote) counters.expiresAt = Math.ceil(keepUntil)
      }
      if (limC >= 0) {
        if (leases === undefined) {
          leases = { members: new Map(), expiresAt: 0 }
          this.leases.set(request.keys.leases, leases)
        }
        leases.members.set(request.leaseId, now + leaseTtlMs)
        leases.expiresAt = now + leaseTtlMs
        inFlight += 1
      }
    }

    return [reason, Math.ceil(retry), now, limM >= 0 ? usedM : 0, limH >= 0 ? usedH : 0, usedQ, inFlight]
  }
}
