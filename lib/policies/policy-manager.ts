// fastify.policies: runtime tiers, tenant and organization overrides, environment multipliers, tenant
// and organization tiers, blocks and shadow mode. Stored in Redis, held in memory by every instance (the request path never asks
// Redis), kept fresh by pub/sub notices, a full reload whenever a notice does not fit what is held,
// and a periodic full reload.
import { hostname } from 'node:os'
import { isDeepStrictEqual } from 'node:util'
import type { FastifyBaseLogger } from 'fastify'
import { KEY_LAYOUT_VERSION, seenTiersKey, subjectBase, storeKeys } from '../keys.js'
import { resolveOptions } from '../options.js'
import type { RouteLimiter } from '../route-config.js'
import { RedisStore } from '../store/redis-store.js'
import type { RedisClient } from '../store/lua-script.js'
import type { RateLimitStore } from '../store/types.js'
import { applyMultiplier, isUnlimited, LIMIT_FIELDS, scaleLimit, limitsToJSON, overlayLimits, tierLimitsFrom, UNLIMITED_TIER, type LimitField, type TierLimits, type TierLimitsInput } from '../tiers.js'
import { LocalPolicyBackend, RedisPolicyBackend, type ChangeNotice, type InvalidEntry, type PolicyBackend } from './policy-backend.js'
import { OrganizationMemo, type OrganizationAnswer, type OrganizationPolicy } from './organization-memo.js'
import { Field, PolicyState, type Block, type TimedPatch } from './policy-state.js'
import { NO_ORGANIZATION, NO_TIER, SeenTiers } from './seen-tiers.js'
import {
  BlockSchema, check, EnvironmentName, MultiplierSchema, OrganizationId, OverrideSchema, ResetUsageOptionsSchema, SharedBudgetName,
  ShadowScopeSchema, TenantId, TierLimitsSchema, TierName, UsageOptionsSchema
} from './schemas.js'
import { checkReportOptions, reportRows, type UsageReportOptions, type UsageReportRow } from './month-report.js'
import { monthKey } from '../store/usage-record.js'
import { usageReport, type TenantUsage, type UsageScope } from './usage-report.js'
import { withDeadline } from '../deadline.js'
import { InvalidPolicyError } from '../errors.js'

export type { OrganizationPolicy } from './organization-memo.js'
export type { TenantUsage, UsageScope, WindowUsage } from './usage-report.js'
export type { UsageReportOptions, UsageReportRow } from './month-report.js'

export interface PolicyManagerOptions {
  keyPrefix?: string
  /** Tiers configured in code (merged over the defaults), as the plugin's `tiers` option. */
  tiers?: Record<string, TierLimitsInput>
  defaultTier?: string
  anonymousTier?: string
  /** Selects the environment multiplier. Default `NODE_ENV`, else `production`. */
  environment?: string
  /** Full reload period, a safety net for missed notices. Default 30 s. */
  reloadIntervalSeconds?: number
  /** Store read by `usage` and cleared by `resetUsage`. Default: a RedisStore on the same client. */
  store?: RateLimitStore
  log?: Pick<FastifyBaseLogger, 'warn' | 'error'>
  /**
   * Called for a stored entry that is not applied because it does not fit its schema (written by
   * another tool or an older version): once per field and version, when it is logged.
   */
  onInvalidEntry?: (field: string, problem: string) => void
  /**
   * For tools with no tiers of their own (maestro-rl): the tiers services recorded under the prefix
   * come before the built-in defaults. Services keep their own configured tiers first.
   */
  recordedTiersFirst?: boolean
}

export interface TenantOverride extends Partial<TierLimitsInput> {
  /** The override disappears by itself after this many seconds. */
  expiresInSeconds?: number
}

/** An organization's override: the same fields, for the sum of its tenants' traffic. */
export type OrganizationOverride = TenantOverride

export type ShadowScope = { scope: 'global' } | { scope: 'tier', tier: string } | { scope: 'tenant', tenantId: string }

/** What the request path needs about one request's subject. */
export interface RequestPolicy {
  readonly tier: string
  /** Its `monthlyQuota` is the subject's, across all buckets. */
  readonly limits: TierLimits
  /** The route's own monthly cap on its bucket (`Infinity`: none). */
  readonly bucketQuota: number
  readonly shadow: boolean
  readonly block: Block | undefined
}

export interface ResolvedPolicy {
  tenantId: string
  tier: string
  /**
   * Where the tier came from: the caller (`request`), the tier the tenant's extractor reported on
   * its latest request (`seen`), the tenant's stored tier (`tenant`), or the default tier.
   */
  tierSource: TierSource
  environment: string
  multiplier: number
  /** Effective limits (null: unlimited). */
  limits: TierLimitsInput
  /** Where each number came from before the multiplier: the tier or the tenant's override. */
  sources: Record<LimitField, 'tier' | 'override'>
  override: (Partial<TierLimitsInput> & { expiresAt: number | null }) | null
  blocked: { reason: string | null, expiresAt: number | null } | null
  shadow: boolean
}

export type TierSource = 'request' | 'seen' | 'tenant' | 'default'

/**
 * Where an organization's tier came from: the caller (`request`), the tier its extractor reported
 * on its latest request (`seen`), its stored tier (`organization`), or none (`none`: no tier, so
 * only its override limits it).
 */
export type OrganizationTierSource = 'request' | 'seen' | 'organization' | 'none'

export interface ResolvedOrganizationPolicy {
  organizationId: string
  /** null: no tier (the extractor reports none and none is stored). */
  tier: string | null
  tierSource: OrganizationTierSource
  environment: string
  multiplier: number
  /** Effective limits for the sum of its tenants' traffic (null: unlimited). */
  limits: TierLimitsInput
  /** Where each number came from before the multiplier: the tier, the override, or neither (`none`: unlimited). */
  sources: Record<LimitField, 'tier' | 'override' | 'none'>
  override: (Partial<TierLimitsInput> & { expiresAt: number | null }) | null
}

export interface UsageOptions {
  /** Whose counters: a tenant's (the default), an organization's, or a shared route budget's. */
  scope?: UsageScope
  /** A tenant's named bucket's counters instead of its shared ones. */
  bucket?: string
  /**
   * The tier whose limits to report (a tenant or an organization); by default the subject's, as
   * `resolve` or `resolveOrganization` finds it.
   */
  tier?: string
  /**
   * A tenant's organization: where its keys live. Default: the organization it was last seen in
   * (none: its own keys).
   */
  organizationId?: string
}

export interface ResetUsageOptions {
  /** Whose counters: a tenant's (the default) or an organization's own (not its tenants'). */
  scope?: 'tenant' | 'organization'
  /** A tenant's organization; default: the one it was last seen in. */
  organizationId?: string
}

const MAX_REMEMBERED_UNKNOWN = 1000
/** Unfit entries remembered as already reported; past this many, they are reported again. */
const MAX_REMEMBERED_INVALID = 1000

export class PolicyManager {
  readonly keyPrefix: string
  readonly environment: string
  readonly defaultTier: string
  readonly anonymousTier: string
  private readonly configuredTiers: ReadonlyMap<string, TierLimits>
  private readonly recordedTiersFirst: boolean
  /** Who this instance is, in the records of configured tiers. */
  private readonly writer = `${hostname()}:${process.pid}`
  /** Set until this instance's tiers are recorded: each reload tries again meanwhile. */
  private tierRecordsPending = false
  /** Whether a reload has read the store at least once. */
  private loaded = false
  private recordingTiers: Promise<void> | undefined
  private readonly seen: SeenTiers
  /** The organization each tenant was last seen in (NO_ORGANIZATION: none). */
  private readonly seenOrganizations: SeenTiers
  /** The tier each organization's extractor last reported. */
  private readonly seenOrganizationTiers: SeenTiers
  private readonly organizations = new OrganizationMemo()
  /** Shared route budgets this instance's routes declare: name → limits, before the multiplier. */
  private readonly sharedBudgets = new Map<string, TierLimits>()
  private readonly state = new PolicyState()
  private readonly backend: PolicyBackend
  private readonly store: RateLimitStore | undefined
  private readonly log: Pick<FastifyBaseLogger, 'warn' | 'error'> | undefined
  private readonly reloadIntervalMs: number
  private readonly unknownTiersSeen = new Set<string>()
  private readonly onInvalidEntry: ((field: string, problem: string) => void) | undefined
  private readonly invalidSeen = new Set<string>()
  private reloading: Promise<void> | undefined
  private reloadQueued: Promise<void> | undefined
  private reloadTimer: NodeJS.Timeout | undefined
  private multiplied = new WeakMap<TierLimits, TierLimits>()
  private multipliedGeneration = -1

  constructor (redis: RedisClient | undefined, options: PolicyManagerOptions = {}) {
    const resolved = resolveOptions({
      tiers: options.tiers,
      defaultTier: options.defaultTier,
      anonymousTier: options.anonymousTier,
      environment: options.environment,
      keyPrefix: options.keyPrefix
    })
    this.keyPrefix = resolved.keyPrefix
    this.environment = resolved.environment
    this.defaultTier = resolved.defaultTier
    this.anonymousTier = resolved.anonymousTier
    this.configuredTiers = resolved.tiers
    this.backend = redis === undefined ? new LocalPolicyBackend() : new RedisPolicyBackend(redis, this.keyPrefix)
    this.store = options.store ?? (redis === undefined ? undefined : new RedisStore({ client: redis }))
    this.log = options.log
    this.onInvalidEntry = options.onInvalidEntry
    this.reloadIntervalMs = (options.reloadIntervalSeconds ?? 30) * 1000
    this.recordedTiersFirst = options.recordedTiersFirst ?? false
    this.seen = new SeenTiers(redis, seenTiersKey(this.keyPrefix), this.log)
    // Hashes next to {seen-tiers}, each with a hash tag of its own.
    const seenKey = (name: string): string => `${this.keyPrefix}:${KEY_LAYOUT_VERSION}:{${name}}`
    this.seenOrganizations = new SeenTiers(redis, seenKey('seen-orgs'), this.log, 'the organizations tenants were seen in')
    this.seenOrganizationTiers = new SeenTiers(redis, seenKey('seen-org-tiers'), this.log, 'the tiers organizations were seen with')
  }

  /**
   * Loads the stored policies and starts following changes. Waits at most `startTimeoutMs` for
   * Redis: a service must boot while Redis is away, and catches up when it is back.
   */
  async start (startTimeoutMs = 2000): Promise<void> {
    const subscribed = this.backend.subscribe(notice => this.receive(notice), () => { this.reload().catch(() => {}) })
    subscribed.catch(err => this.log?.error({ err }, 'rate limiting: could not subscribe to policy changes'))
    this.reloadTimer = setInterval(() => { this.reload().catch(() => {}) }, this.reloadIntervalMs)
    this.reloadTimer.unref()
    // Failures are logged where they happen; only a wait past the deadline matters here.
    const ready = Promise.all([subscribed, this.reload()]).catch(() => {})
    try {
      await withDeadline(ready, startTimeoutMs, 'Redis')
    } catch {
      this.log?.warn('rate limiting: policies not loaded yet (Redis slow or away); continuing with configured tiers')
    }
  }

  async close (): Promise<void> {
    clearInterval(this.reloadTimer)
    await Promise.all([this.seen.close(), this.seenOrganizations.close(), this.seenOrganizationTiers.close()])
    await this.recordingTiers
    await this.backend.close()
  }

  /**
   * Reads every stored policy again and drops expired ones. Runs periodically by itself, and when a
   * notice does not fit what is held. One read at a time: calls made while one runs share the next.
   */
  async reload (): Promise<void> {
    if (this.reloading === undefined) {
      this.reloading = this.readSnapshot().finally(() => { this.reloading = undefined })
      return await this.reloading
    }
    this.reloadQueued ??= this.reloading.then(async () => {
      this.reloadQueued = undefined
      await this.reload()
    })
    return await this.reloadQueued
  }

  private async readSnapshot (): Promise<void> {
    try {
      const mark = this.state.mark()
      const { version, entries, invalid } = await this.backend.snapshot()
      for (const entry of invalid) this.reportInvalid(entry)
      this.state.replaceWith(entries, version, mark)
      this.loaded = true
      for (const [field, v] of this.state.expired(Date.now())) {
        const notice = await this.backend.write(field, undefined, null, v)
        if (notice !== undefined) this.state.apply(notice.field, notice.entry)
      }
      // Not awaited: a write may ask for a reload, which waits for this one.
      if (this.tierRecordsPending) this.recordTiersInBackground()
    } catch (err) {
      this.log?.error({ err }, 'rate limiting: could not reload policies; keeping the last known ones')
    }
  }

  // ---- the request path: memory only ----

  /** Changes whenever any policy changes (or usage is reset): caches built on policies compare it. */
  get generation (): number {
    return this.state.generation
  }

  /**
   * Tier, limits, shadow flag and block of one request. `tenantId` undefined: anonymous.
   * `organizationId`: the tenant's organization, as its extractor reports it (remembered, so usage
   * finds the tenant's keys).
   */
  forRequest (tenantId: string | undefined, requestedTier: string | undefined, route: RouteLimiter, organizationId?: string): RequestPolicy {
    const state = this.state
    if (tenantId === undefined) {
      const tier = this.anonymousTier
      const limits = this.multiply(route.limitsFor(tier, this.tierLimits(tier)))
      return { tier, limits, bucketQuota: this.multiplyQuota(route.bucketQuotaFor(tier)), shadow: state.shadowGlobal || state.shadowTiers.has(tier), block: undefined }
    }
    const tier = this.knownTier(requestedTier ?? state.tenantTiers.get(tenantId))
    this.seen.note(tenantId, requestedTier === undefined ? NO_TIER : tier)
    this.seenOrganizations.note(tenantId, organizationId ?? NO_ORGANIZATION)
    const limits = this.multiply(route.limitsFor(tier, this.tierWithOverride(tenantId, tier)))
    const block = state.blocks.get(tenantId)
    return {
      tier,
      limits,
      bucketQuota: this.multiplyQuota(route.bucketQuotaFor(tier)),
      shadow: state.shadowGlobal || state.shadowTiers.has(tier) || state.shadowTenants.has(tenantId),
      block: block !== undefined && !expired(block.expiresAt) ? block : undefined
    }
  }

  /**
   * The limits of one request's organization, for the sum of its tenants' traffic: its tier (the one
   * its extractor reports, else its stored tier, else none), its override, the environment
   * multiplier. Undefined when nothing limits it. Memory only; remembered until a policy changes.
   */
  forOrganization (organizationId: string, requestedTier: string | undefined): OrganizationPolicy | undefined {
    let answer = this.organizations.get(organizationId, requestedTier, this.state.generation)
    if (answer === undefined) {
      answer = this.organizationAnswer(organizationId, requestedTier)
      this.organizations.set(organizationId, answer)
    }
    this.seenOrganizationTiers.note(organizationId, answer.seenAs)
    return answer.policy
  }

  /** Limits with this environment's multiplier applied (memoised per limits object). */
  multiplyLimits (limits: TierLimits): TierLimits {
    return this.multiply(limits)
  }

  /**
   * Records the limits (before the multiplier) of a shared route budget this instance's routes
   * declare, so usage can report them. The latest registration of a name wins.
   */
  registerSharedBudget (name: string, limits: TierLimits): void {
    check(SharedBudgetName, name, 'name')
    this.sharedBudgets.set(name, limits)
  }

  /** The limits registered for a shared route budget on this instance (before the multiplier). */
  sharedBudget (name: string): TierLimits | undefined {
    return this.sharedBudgets.get(name)
  }

  // ---- tenant overrides ----

  async setTenantOverride (tenantId: string, override: TenantOverride): Promise<void> {
    check(TenantId, tenantId, 'tenantId')
    await this.writeOverride(Field.override(tenantId), override)
  }

  async getTenantOverride (tenantId: string): Promise<(Partial<TierLimitsInput> & { expiresAt: number | null }) | null> {
    check(TenantId, tenantId, 'tenantId')
    return overrideReply(live(this.state.overrides.get(tenantId)))
  }

  async removeTenantOverride (tenantId: string): Promise<boolean> {
    check(TenantId, tenantId, 'tenantId')
    return await this.remove(Field.override(tenantId))
  }

  // ---- organizations: limits for the sum of their tenants' traffic ----

  async setOrganizationOverride (organizationId: string, override: OrganizationOverride): Promise<void> {
    check(OrganizationId, organizationId, 'organizationId')
    await this.writeOverride(Field.orgOverride(organizationId), override)
  }

  async getOrganizationOverride (organizationId: string): Promise<(Partial<TierLimitsInput> & { expiresAt: number | null }) | null> {
    check(OrganizationId, organizationId, 'organizationId')
    return overrideReply(live(this.state.orgOverrides.get(organizationId)))
  }

  async removeOrganizationOverride (organizationId: string): Promise<boolean> {
    check(OrganizationId, organizationId, 'organizationId')
    return await this.remove(Field.orgOverride(organizationId))
  }

  /** The tier of an organization whose extractor reports none. */
  async setOrganizationTier (organizationId: string, tier: string): Promise<void> {
    check(OrganizationId, organizationId, 'organizationId')
    check(TierName, tier, 'tier')
    if (!this.hasTier(tier)) throw new InvalidPolicyError(`tier ${tier} is not defined`)
    await this.write(Field.orgTier(organizationId), tier, null)
  }

  async getOrganizationTier (organizationId: string): Promise<string | null> {
    check(OrganizationId, organizationId, 'organizationId')
    return this.state.orgTiers.get(organizationId) ?? null
  }

  async removeOrganizationTier (organizationId: string): Promise<boolean> {
    check(OrganizationId, organizationId, 'organizationId')
    return await this.remove(Field.orgTier(organizationId))
  }

  /**
   * The effective limits of an organization, and where each number came from. `tier`: as if its
   * extractor reported it (refused unless defined); without it, the tier its latest request
   * reported, else its stored tier, else none.
   */
  async resolveOrganization (organizationId: string, tier?: string): Promise<ResolvedOrganizationPolicy> {
    check(OrganizationId, organizationId, 'organizationId')
    if (tier !== undefined) check(TierName, tier, 'tier')
    const { name, source } = await this.organizationTierOf(organizationId, tier)
    const override = live(this.state.orgOverrides.get(organizationId))
    const multiplier = this.state.multipliers.get(this.environment) ?? 1
    const limits = applyMultiplier(overlayLimits(name === null ? UNLIMITED_TIER : this.tierLimits(name), override?.patch), multiplier)
    return {
      organizationId,
      tier: name,
      tierSource: source,
      environment: this.environment,
      multiplier,
      limits: limitsToJSON(limits),
      sources: sourcesOf(override, name === null ? 'none' : 'tier'),
      override: overrideReply(override)
    }
  }

  // ---- environment multipliers ----

  async setEnvironmentMultiplier (environment: string, multiplier: number): Promise<void> {
    check(EnvironmentName, environment, 'environment')
    check(MultiplierSchema, multiplier, 'multiplier')
    await this.write(Field.multiplier(environment), multiplier, null)
  }

  async getEnvironmentMultiplier (environment: string = this.environment): Promise<number> {
    check(EnvironmentName, environment, 'environment')
    return this.state.multipliers.get(environment) ?? 1
  }

  /** This instance's environment, and every environment's stored multiplier (one without: 1). */
  async listEnvironmentMultipliers (): Promise<{ environment: string, multipliers: Record<string, number> }> {
    return { environment: this.environment, multipliers: Object.fromEntries(this.state.multipliers) }
  }

  async removeEnvironmentMultiplier (environment: string): Promise<boolean> {
    check(EnvironmentName, environment, 'environment')
    return await this.remove(Field.multiplier(environment))
  }

  // ---- tiers ----

  /** Defines or replaces a tier at runtime (over the configured one of the same name, if any). */
  async setTier (name: string, limits: TierLimitsInput): Promise<void> {
    check(TierName, name, 'name')
    check(TierLimitsSchema, limits, 'limits')
    await this.write(Field.tier(name), limitsToJSON(tierLimitsFrom(limits)), null)
  }

  /** Removes a runtime tier definition; a configured tier of that name applies again. */
  async removeTier (name: string): Promise<boolean> {
    check(TierName, name, 'name')
    return await this.remove(Field.tier(name))
  }

  /**
   * Every tier known on the prefix: runtime ones, this instance's configured ones, and those other
   * services recorded at their boot (`configured` too).
   */
  async listTiers (): Promise<Record<string, { limits: TierLimitsInput, source: 'runtime' | 'configured' }>> {
    const out: Record<string, { limits: TierLimitsInput, source: 'runtime' | 'configured' }> = {}
    for (const [name, limits] of this.configuredTiers) out[name] = { limits: limitsToJSON(limits), source: 'configured' }
    for (const [name, { limits }] of this.state.recordedTiers) {
      if (this.recordedTiersFirst || out[name] === undefined) out[name] = { limits: limitsToJSON(limits), source: 'configured' }
    }
    for (const [name, limits] of this.state.runtimeTiers) out[name] = { limits: limitsToJSON(limits), source: 'runtime' }
    return out
  }

  // ---- tenant tiers ----

  /** The tier of a tenant whose extractor reports none. */
  async setTenantTier (tenantId: string, tier: string): Promise<void> {
    check(TenantId, tenantId, 'tenantId')
    check(TierName, tier, 'tier')
    if (!this.hasTier(tier)) throw new InvalidPolicyError(`tier ${tier} is not defined`)
    await this.write(Field.tenantTier(tenantId), tier, null)
  }

  async getTenantTier (tenantId: string): Promise<string | null> {
    check(TenantId, tenantId, 'tenantId')
    return this.state.tenantTiers.get(tenantId) ?? null
  }

  async removeTenantTier (tenantId: string): Promise<boolean> {
    check(TenantId, tenantId, 'tenantId')
    return await this.remove(Field.tenantTier(tenantId))
  }

  // ---- blocks ----

  async block (tenantId: string, options: { seconds?: number, reason?: string } = {}): Promise<void> {
    check(TenantId, tenantId, 'tenantId')
    check(BlockSchema, options, 'block')
    await this.write(Field.block(tenantId), { reason: options.reason ?? null }, options.seconds === undefined ? null : options.seconds * 1000)
  }

  async unblock (tenantId: string): Promise<boolean> {
    check(TenantId, tenantId, 'tenantId')
    return await this.remove(Field.block(tenantId))
  }

  // ---- shadow mode ----

  /** Shadow mode counts and reports limits but never enforces them. */
  async setShadowMode (scope: ShadowScope, enabled: boolean): Promise<void> {
    // Name the missing field of the scope given, not of the union's last branch.
    const given = scope as { scope?: unknown, tier?: unknown, tenantId?: unknown } | null
    if (given?.scope === 'tenant' && given.tenantId === undefined) throw new InvalidPolicyError('scope.tenantId is required')
    if (given?.scope === 'tier' && given.tier === undefined) throw new InvalidPolicyError('scope.tier is required')
    check(ShadowScopeSchema, scope, 'scope')
    if (typeof enabled !== 'boolean') throw new InvalidPolicyError('enabled must be a boolean')
    const field = scope.scope === 'global' ? Field.shadowGlobal() : scope.scope === 'tier' ? Field.shadowTier(scope.tier) : Field.shadowTenant(scope.tenantId)
    if (enabled) await this.write(field, true, null)
    else await this.remove(field)
  }

  async shadowModes (): Promise<{ global: boolean, tiers: string[], tenants: string[] }> {
    return { global: this.state.shadowGlobal, tiers: [...this.state.shadowTiers], tenants: [...this.state.shadowTenants] }
  }

  // ---- explanation and usage ----

  /**
   * A tenant's monthly quota as it stands, from memory only: of `tier` (null: its stored tier, else
   * the default), with its override and the environment multiplier. Infinity: unlimited.
   */
  monthlyQuotaNow (tenantId: string, tier: string | null): number {
    const name = this.knownTier(tier ?? this.state.tenantTiers.get(tenantId))
    return this.multiply(this.tierWithOverride(tenantId, name)).monthlyQuota
  }

  /** Tenants with an override or a block in force, as this instance holds them. */
  tenantsWithPolicies (): string[] {
    const ids = new Set<string>()
    for (const [id, override] of this.state.overrides) if (live(override) !== undefined) ids.add(id)
    for (const [id, block] of this.state.blocks) if (!expired(block.expiresAt)) ids.add(id)
    return [...ids]
  }

  /**
   * The effective limits of a tenant, and where each number came from. `tier`: as if the extractor
   * reported it (refused unless defined); without it, the tenant's tier as `tierOf` finds it.
   */
  async resolve (tenantId: string, tier?: string): Promise<ResolvedPolicy> {
    check(TenantId, tenantId, 'tenantId')
    if (tier !== undefined) check(TierName, tier, 'tier')
    const { name, source: tierSource } = await this.tierOf(tenantId, tier)
    const override = live(this.state.overrides.get(tenantId))
    const multiplier = this.state.multipliers.get(this.environment) ?? 1
    const limits = applyMultiplier(this.tierWithOverride(tenantId, name), multiplier)
    const block = this.state.blocks.get(tenantId)
    const blocked = block !== undefined && !expired(block.expiresAt) ? { reason: block.reason ?? null, expiresAt: block.expiresAt } : null
    return {
      tenantId,
      tier: name,
      tierSource,
      environment: this.environment,
      multiplier,
      limits: limitsToJSON(limits),
      sources: sourcesOf(override, 'tier'),
      override: overrideReply(override),
      blocked,
      shadow: this.state.shadowGlobal || this.state.shadowTiers.has(name) || this.state.shadowTenants.has(tenantId)
    }
  }

  /**
   * What a subject has used and has left. A tenant (the default scope): its shared counters, or a
   * named bucket's, where its keys live (`options.organizationId`, else the organization it was last
   * seen in), against the limits of `options.tier`, else of its tier as `resolve` finds it. An
   * organization: its own counters (the sum of its tenants), against `resolveOrganization`'s
   * limits. A shared route budget: its counters, against the limits this instance registered for
   * it (null when none).
   */
  async usage (id: string, options: UsageOptions = {}): Promise<TenantUsage> {
    check(UsageOptionsSchema, options, 'options')
    const scope = options.scope ?? 'tenant'
    if (scope === 'tenant') return await this.tenantUsage(id, options)
    if (options.bucket !== undefined) throw new InvalidPolicyError(`options.bucket applies to a tenant only (${scope}s have no buckets)`)
    if (options.organizationId !== undefined) throw new InvalidPolicyError('options.organizationId applies to a tenant only')
    if (scope === 'organization') {
      check(OrganizationId, id, 'organizationId')
      const store = this.requireStore()
      const resolved = await this.resolveOrganization(id, options.tier)
      const used = await store.usage(storeKeys(this.keyPrefix, 'organization', id, undefined))
      return usageReport({ scope, id, organizationId: id, tier: resolved.tier, bucket: null }, resolved.limits, used)
    }
    check(SharedBudgetName, id, 'name')
    if (options.tier !== undefined) throw new InvalidPolicyError('options.tier does not apply to a shared route budget')
    const store = this.requireStore()
    const registered = this.sharedBudgets.get(id)
    const limits = registered === undefined ? UNLIMITED_TIER : applyMultiplier(registered, this.state.multipliers.get(this.environment) ?? 1)
    const used = await store.usage(storeKeys(this.keyPrefix, 'route', id, undefined))
    return usageReport({ scope, id, organizationId: null, tier: null, bucket: null }, limitsToJSON(limits), used)
  }

  /**
   * Forgets every counter and lease of a tenant, in every bucket: its own keys and those under its
   * organization (`options.organizationId`, else the one it was last seen in). For an organization
   * (`scope: 'organization'`): its own counters only; its tenants' stay.
   */
  async resetUsage (id: string, options: ResetUsageOptions = {}): Promise<void> {
    check(ResetUsageOptionsSchema, options, 'options')
    const store = this.requireStore()
    if (options.scope === 'organization') {
      if (options.organizationId !== undefined) throw new InvalidPolicyError('options.organizationId applies to a tenant only')
      check(OrganizationId, id, 'organizationId')
      await store.resetSubject(subjectBase(this.keyPrefix, 'organization', id))
      await this.write(Field.orgReset(id), Date.now(), 3_600_000)
      return
    }
    check(TenantId, id, 'tenantId')
    const organizationId = options.organizationId ?? await this.organizationOf(id)
    await store.resetSubject(subjectBase(this.keyPrefix, 'tenant', id))
    if (organizationId !== undefined) await store.resetSubject(subjectBase(this.keyPrefix, 'tenant', id, organizationId))
    // Tell every instance, so rejections they remember for this tenant are dropped.
    await this.write(Field.reset(id), Date.now(), 3_600_000)
  }

  /**
   * Every tenant's and organization's usage of one month (`options.month`, `YYYY-MM`, UTC), as the
   * store kept it: a row for each subject's month and one for each bucket with a cap of its own.
   * Rows come as the store reads them (no order), so memory stays bounded whatever their number.
   * Bad input is refused at the call, before anything is read.
   */
  usageReport (options: UsageReportOptions): AsyncIterable<UsageReportRow> {
    checkReportOptions(options)
    const store = this.requireStore()
    if (store.usageMonth === undefined) throw new InvalidPolicyError('usageReport needs a store with usageMonth (the built-in stores have it)')
    return reportRows(store.usageMonth(monthKey(options.month), this.keyPrefix))
  }

  // ---- configured tiers, recorded under the prefix ----

  /** Whether anything is stored under the prefix (a policy, or a service's tiers), as last read. */
  get prefixInUse (): boolean {
    return this.state.holdsAny()
  }

  /**
   * Records this instance's configured tiers under the prefix (the plugin does it at boot), so
   * maestro-rl and other services' admin routes know them. Only names recorded with other limits,
   * or not at all, are written; a name another service recorded with other limits is taken over
   * (the last to boot wins) and the conflict is logged. Never throws; waits at most `timeoutMs` for
   * Redis, and when that is not enough, every reload tries again until it is done.
   */
  async recordConfiguredTiers (timeoutMs = 2000): Promise<void> {
    this.tierRecordsPending = true
    // Without a first read of the store there is nothing to compare with: the first reload records.
    if (!this.loaded) return
    try {
      await withDeadline(this.recordTiersInBackground(), timeoutMs, 'Redis')
    } catch {
      this.log?.warn('rate limiting: Redis slow: the configured tiers are recorded in the background')
    }
  }

  private recordTiersInBackground (): Promise<void> {
    this.recordingTiers ??= this.writeTierRecords()
      .then(() => { this.tierRecordsPending = false })
      .catch(err => this.log?.warn({ err }, 'rate limiting: could not record the configured tiers; trying again at the next reload'))
      .finally(() => { this.recordingTiers = undefined })
    return this.recordingTiers
  }

  private async writeTierRecords (): Promise<void> {
    for (const [name, limits] of this.configuredTiers) {
      const mine = limitsToJSON(limits)
      const recorded = this.state.recordedTiers.get(name)
      if (recorded !== undefined) {
        const theirs = limitsToJSON(recorded.limits)
        if (isDeepStrictEqual(theirs, mine)) continue
        this.log?.warn({ tier: name, recorded: theirs, recordedBy: recorded.by, configured: mine },
          'rate limiting: tier %s is configured with other limits by another service on this prefix; recording this one (the last to boot wins)', name)
      }
      await this.write(Field.configuredTier(name), { limits: mine, by: this.writer }, null)
    }
  }

  // ---- internals ----

  private async tenantUsage (tenantId: string, options: UsageOptions): Promise<TenantUsage> {
    check(TenantId, tenantId, 'tenantId')
    const store = this.requireStore()
    const resolved = await this.resolve(tenantId, options.tier)
    const organizationId = options.organizationId ?? await this.organizationOf(tenantId)
    const used = await store.usage(storeKeys(this.keyPrefix, 'tenant', tenantId, options.bucket, organizationId))
    const subject = { scope: 'tenant' as const, id: tenantId, organizationId: organizationId ?? null, tier: resolved.tier, bucket: options.bucket ?? null }
    return usageReport(subject, resolved.limits, used)
  }

  /** The organization a tenant was last seen in: this process's memory, then any instance's record. */
  private async organizationOf (tenantId: string): Promise<string | undefined> {
    const seen = await this.seenOrganizations.read(tenantId)
    return seen === undefined || seen === NO_ORGANIZATION ? undefined : seen
  }

  /** forOrganization's answer, computed: see there. */
  private organizationAnswer (organizationId: string, requested: string | undefined): OrganizationAnswer {
    const stored = requested === undefined ? this.state.orgTiers.get(organizationId) : undefined
    const tier = requested !== undefined ? this.knownTier(requested) : stored !== undefined ? this.knownTier(stored) : null
    const override = live(this.state.orgOverrides.get(organizationId))
    const limits = this.multiply(overlayLimits(tier === null ? UNLIMITED_TIER : this.tierLimits(tier), override?.patch))
    return {
      requested,
      policy: isUnlimited(limits) ? undefined : Object.freeze({ tier, limits }),
      seenAs: requested === undefined || tier === null ? NO_TIER : tier,
      validUntil: override?.expiresAt ?? Infinity
    }
  }

  /** Stores an override (a tenant's or an organization's) after checking it. */
  private async writeOverride (field: string, override: TenantOverride): Promise<void> {
    check(OverrideSchema, override, 'override')
    const { expiresInSeconds, ...limits } = override
    const patch = Object.fromEntries(Object.entries(limits).map(([k, v]) => [k, v === Infinity ? null : v]))
    if (Object.keys(patch).length === 0) throw new InvalidPolicyError('override must set at least one limit')
    await this.write(field, patch, expiresInSeconds === undefined ? null : expiresInSeconds * 1000)
  }

  /** A tier given to resolve or usage: refused unless defined. */
  private givenTier (tier: string | undefined): { name: string, source: 'request' } | undefined {
    if (tier === undefined) return undefined
    if (!this.hasTier(tier)) throw new InvalidPolicyError(`tier ${tier} is not defined`)
    return { name: tier, source: 'request' }
  }

  private hasTier (name: string): boolean {
    return this.state.runtimeTiers.has(name) || this.configuredTiers.has(name) || this.state.recordedTiers.has(name)
  }

  /**
   * A tier's limits: the runtime definition, else this instance's configured one, else one another
   * service recorded (for tools, recorded ones come before the built-in defaults), else the default tier's.
   */
  private tierLimits (name: string): TierLimits {
    const runtime = this.state.runtimeTiers.get(name)
    if (runtime !== undefined) return runtime
    const recorded = this.state.recordedTiers.get(name)?.limits
    const configured = this.configuredTiers.get(name)
    return (this.recordedTiersFirst ? recorded ?? configured : configured ?? recorded) ?? this.configuredTiers.get(this.defaultTier) as TierLimits
  }

  /**
   * The tier to explain or measure a tenant with: the given one (refused unless defined); else the
   * tier its extractor reported on its latest request; else its stored tier; else the default.
   * The same order as the request path's, applied to the tenant's latest request.
   */
  private async tierOf (tenantId: string, tier: string | undefined): Promise<{ name: string, source: TierSource }> {
    const given = this.givenTier(tier)
    if (given !== undefined) return given
    const seen = await this.seen.read(tenantId)
    if (seen !== undefined && seen !== NO_TIER) return { name: this.knownTier(seen), source: 'seen' }
    const stored = this.state.tenantTiers.get(tenantId)
    if (stored !== undefined) return { name: this.knownTier(stored), source: 'tenant' }
    return { name: this.defaultTier, source: 'default' }
  }

  /**
   * The tier to explain or measure an organization with: the given one (refused unless defined);
   * else the tier its extractor reported on its latest request; else its stored tier; else none.
   */
  private async organizationTierOf (organizationId: string, tier: string | undefined): Promise<{ name: string | null, source: OrganizationTierSource }> {
    const given = this.givenTier(tier)
    if (given !== undefined) return given
    const seen = await this.seenOrganizationTiers.read(organizationId)
    if (seen !== undefined && seen !== NO_TIER) return { name: this.knownTier(seen), source: 'seen' }
    const stored = this.state.orgTiers.get(organizationId)
    if (stored !== undefined) return { name: this.knownTier(stored), source: 'organization' }
    return { name: null, source: 'none' }
  }

  /** A known tier for a requested name: itself, or the default tier (each unknown name logged once). */
  private knownTier (requested: string | undefined): string {
    if (requested === undefined) return this.defaultTier
    if (this.hasTier(requested)) return requested
    if (this.unknownTiersSeen.size < MAX_REMEMBERED_UNKNOWN && !this.unknownTiersSeen.has(requested)) {
      this.unknownTiersSeen.add(requested)
      this.log?.warn({ tier: requested, fallback: this.defaultTier }, 'rate limiting: unknown tier, using the default tier')
    }
    return this.defaultTier
  }

  /** The environment multiplier applied to limits, memoised per limits object. */
  /** A tier's limits with the tenant's override in force laid over them (before the multiplier). */
  private tierWithOverride (tenantId: string, tier: string): TierLimits {
    const override = live(this.state.overrides.get(tenantId))
    const limits = this.tierLimits(tier)
    return override === undefined ? limits : overlayLimits(limits, override.patch)
  }

  private multiply (limits: TierLimits): TierLimits {
    const multiplier = this.state.multipliers.get(this.environment)
    if (multiplier === undefined || multiplier === 1) return limits
    if (this.multipliedGeneration !== this.state.generation) {
      this.multiplied = new WeakMap()
      this.multipliedGeneration = this.state.generation
    }
    let out = this.multiplied.get(limits)
    if (out === undefined) {
      out = applyMultiplier(limits, multiplier)
      this.multiplied.set(limits, out)
    }
    return out
  }

  /** A route's monthly cap, scaled like every other limit of this environment. */
  private multiplyQuota (quota: number): number {
    return scaleLimit(quota, this.state.multipliers.get(this.environment) ?? 1)
  }

  private requireStore (): RateLimitStore {
    if (this.store === undefined) throw new InvalidPolicyError('usage needs a store: pass options.store or a Redis client')
    return this.store
  }

  private async write (field: string, value: unknown, lifetimeMs: number | null): Promise<void> {
    const notice = await this.backend.write(field, value, lifetimeMs)
    // Read your own writes at once; when the view holds a higher version, read the store instead.
    if (notice !== undefined && !this.state.apply(notice.field, notice.entry)) await this.reload()
  }

  private async remove (field: string): Promise<boolean> {
    const existed = this.state.entry(field) !== undefined
    await this.write(field, undefined, null)
    return existed
  }

  /** Another instance's change; one that does not follow from what is held makes this instance reload. */
  private receive (notice: ChangeNotice): void {
    if (notice.invalid !== undefined) this.reportInvalid(notice.invalid)
    if (!this.state.receive(notice.field, notice.entry)) this.reload().catch(() => {})
  }

  /** Logs and counts an unfit entry once per field and version (every reload reads it again). */
  private reportInvalid ({ field, v, problem }: InvalidEntry): void {
    const key = `${field}@${v ?? '?'}`
    if (this.invalidSeen.has(key)) return
    if (this.invalidSeen.size >= MAX_REMEMBERED_INVALID) this.invalidSeen.clear()
    this.invalidSeen.add(key)
    this.log?.warn({ field, version: v ?? null, problem }, 'rate limiting: invalid policy entry ignored')
    this.onInvalidEntry?.(field, problem)
  }
}

function expired (expiresAt: number | null): boolean {
  return expiresAt !== null && expiresAt <= Date.now()
}

/** An override still in force, or undefined. */
function live (held: TimedPatch | undefined): TimedPatch | undefined {
  return held !== undefined && !expired(held.expiresAt) ? held : undefined
}

function overrideReply (override: TimedPatch | undefined): (Partial<TierLimitsInput> & { expiresAt: number | null }) | null {
  return override === undefined ? null : { ...override.patch, expiresAt: override.expiresAt }
}

/** Per limit: from the override when it sets that field, else from `otherwise`. */
function sourcesOf<S extends string> (override: TimedPatch | undefined, otherwise: S): Record<LimitField, 'override' | S> {
  const sources = {} as Record<LimitField, 'override' | S>
  for (const field of LIMIT_FIELDS) sources[field] = override !== undefined && field in override.patch ? 'override' : otherwise
  return sources
}
