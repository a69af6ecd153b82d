// The request path: who is calling → which limits → one store call → headers, or a 429.
import { randomBytes } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { DegradedLog } from './degraded-log.js'
import { withDeadline } from './deadline.js'
import { CallerUnidentifiedError, ExtractorFailedError, RateLimitExceededError, StoreUnavailableRefusalError, TenantBlockedError } from './errors.js'
import { retryAfterSeconds, setCompactRateLimitHeaders, setIetfHeaders, setRateLimitHeaders } from './headers.js'
import { KeyCache, subjectBaseOf, type StoreKeys } from './keys.js'
import { clientGone } from './lease-hooks.js'
import type { HeldLease, LeaseKeeper } from './lease-keeper.js'
import { leaseKeysOf, type LevelResolver } from './levels.js'
import type { AlertPublisher } from './alerts/alert-publisher.js'
import type { UsageNotes } from './alerts/usage-notes.js'
import { recordAdmission, type EndpointMetrics, type LimiterMetrics, type RequestSeries } from './metrics.js'
import type { RateLimitContext, ResolvedOptions, TenantIdentity } from './options.js'
import type { PolicyManager } from './policies/policy-manager.js'
import { refuse } from './refusal-body.js'
import { RequestRateLimit } from './request-context.js'
import type { RejectionCache } from './rejection-cache.js'
import type { RouteLimiter, SharedBudget } from './route-config.js'
import { admitInto, type AdjustRequest, type AdmitLevel, type Decision, type DecisionSink, type RateLimitStore, type RejectReason } from './store/types.js'
import { isUnlimited } from './tiers.js'

/**
 * The concurrency lease a request holds until its response is sent or it is aborted: one id, held
 * at its subject and at every level above it with a concurrency limit.
 */
export interface Lease { readonly id: string, readonly tier: string, readonly held: readonly HeldLease[] }

export const kLease = Symbol('maestro-rate-limiting.lease')

declare module 'fastify' {
  interface FastifyRequest {
    [kLease]: Lease | null
  }
}

const MESSAGES: Record<RejectReason, string> = {
  rate_limit_exceeded: 'Rate limit exceeded',
  concurrent_limit_exceeded: 'Too many concurrent requests',
  quota_exceeded: 'Monthly quota exceeded'
}

/** Fastify's continuation: onRequest, preValidation and preHandler pass it third; preParsing fourth, after the payload. */
type Done = (err?: Error) => void

/**
 * A route's limiter hook, in Fastify's callback style: a request decided without waiting (no limit,
 * a cached rejection, the memory store) costs no promise, and one that waits for Redis costs one.
 */
export type LimitHook = (request: FastifyRequest, reply: FastifyReply, doneOrPayload: unknown, preParsingDone?: Done) => void

/** The continuation among a LimitHook's arguments (a payload stream is never a function). */
export function doneOf (doneOrPayload: unknown, preParsingDone: Done | undefined): Done {
  return (typeof doneOrPayload === 'function' ? doneOrPayload : preParsingDone) as Done
}

/** What the limiter does with a store's answer: its own steps, handed to every PendingDecision. */
interface LimiterSteps {
  settle: (pending: PendingDecision, decision: Decision) => void
  storeFailed: (pending: PendingDecision, err: unknown) => void
}

/** One request waiting for the store: what its answer needs, and the sink the store answers. */
class PendingDecision implements DecisionSink {
  constructor (
    private readonly steps: LimiterSteps,
    readonly request: FastifyRequest,
    readonly reply: FastifyReply,
    readonly done: Done,
    readonly context: RequestRateLimit,
    readonly series: RequestSeries,
    readonly keys: StoreKeys,
    readonly bucketQuota: number,
    readonly levels: readonly AdmitLevel[] | undefined,
    readonly leaseId: string,
    readonly started: number
  ) {}

  decided (decision: Decision): void {
    // What a step throws (a user hook, say) goes to Fastify, not to the store.
    try {
      this.steps.settle(this, decision)
    } catch (err) {
      this.done(err as Error)
    }
  }

  failed (err: unknown): void {
    try {
      this.steps.storeFailed(this, err)
    } catch (thrown) {
      this.done(thrown as Error)
    }
  }
}

export class Limiter {
  // Lease ids: unique per process and request without a random call per request.
  private readonly leasePrefix = randomBytes(9).toString('base64url') + ':'
  private leaseSeq = 0
  private readonly keys: KeyCache

  constructor (
    private readonly options: ResolvedOptions,
    private readonly store: RateLimitStore,
    private readonly policies: PolicyManager,
    private readonly metrics: LimiterMetrics,
    private readonly leases: LeaseKeeper,
    private readonly degraded: DegradedLog,
    /** Shared with fastify.rateLimiter, whose refunds make remembered rejections stale. */
    private readonly rejections: RejectionCache,
    private readonly levels: LevelResolver,
    /** Quota alerts, when on: the crossings an admission reports become events. */
    private readonly alerts: AlertPublisher | undefined,
    /** Names subjects in their usage records (shared with fastify.rateLimiter: once per subject and month). */
    private readonly usageNotes: UsageNotes
  ) {
    this.keys = new KeyCache(options.keyPrefix)
  }

  /** A route naming a shared budget (see LevelResolver.registerBudget). */
  registerBudget (shared: SharedBudget, routeName: string): void {
    this.levels.registerBudget(shared, routeName)
  }

  /** The hook that limits one route; `endpoint` is its pattern, as metrics label it. */
  hookFor (route: RouteLimiter, endpoint: string): LimitHook {
    const endpointMetrics = this.metrics.endpoint(endpoint)
    return (request, reply, doneOrPayload, preParsingDone) => {
      const done = doneOf(doneOrPayload, preParsingDone)
      if (request.rateLimit !== null) return done() // once per request, whatever calls us again
      // The request's cost first: a route whose cost function fails answers 500 and counts nothing.
      const cost = route.costOf === undefined ? route.cost : route.costOf(request)
      if (cost instanceof Promise) {
        cost.then(known => this.guard(route, endpointMetrics, request, reply, done, known, undefined), done)
      } else {
        this.limitAt(route, endpointMetrics, request, reply, done, cost)
      }
    }
  }

  /** Once the cost is known: who is calling, then `limit`. */
  private limitAt (route: RouteLimiter, endpointMetrics: EndpointMetrics, request: FastifyRequest, reply: FastifyReply, done: Done, cost: number | Error): void {
    if (cost instanceof Error) return done(cost)
    const found = this.options.tenantExtractor === undefined ? null : this.identify(request, reply)
    if (found instanceof Promise) {
      found.then(identity => this.guard(route, endpointMetrics, request, reply, done, cost, identity), done)
    } else {
      this.limit(route, endpointMetrics, request, reply, done, cost, found)
    }
  }

  /** Gives back the request's lease, if it holds one; safe to call any number of times. */
  release (request: FastifyRequest): void {
    const lease = request[kLease]
    if (lease === null) return
    request[kLease] = null
    for (const held of lease.held) {
      this.leases.delete(held)
      this.store.release(held.keys, held.id)
    }
    this.metrics.leaseReleased(lease.tier)
  }

  /**
   * The request is over: its handler answered (`answered`), or its client left before that. Its
   * lease goes back once answered, and its settlement (a settled cost, or refundWhen's refund) is
   * counted in one store call. Safe to call any number of times.
   */
  finish (request: FastifyRequest, answered: boolean): void {
    if (answered) this.release(request)
    else this.stopRenewing(request)
    const context = request.rateLimit
    if (!(context instanceof RequestRateLimit)) return
    let changes: AdjustRequest[] | undefined
    try {
      changes = context.settlement(request, answered)
    } catch (err) {
      request.log.error({ err }, 'rate limiting: refundWhen threw; nothing is refunded')
      return
    }
    if (changes === undefined) return
    const { store } = this
    if (store.adjust === undefined) {
      request.log.error('rate limiting: this store cannot adjust counts, so the settled cost is not counted')
      return
    }
    // A subject whose counts went down may fit again: its remembered rejections are stale.
    if (changes[0].amount < 0) this.rejections.forget(subjectBaseOf(changes[0].keys))
    // One change per level that counted the request (batched into one call on a single Redis). A
    // store away fails every settlement: logged as the outage's decisions are, not one line each.
    for (const change of changes) store.adjust(change).catch((err: unknown) => this.degraded.note('unsettled', err))
  }

  /** Keeps the request's lease but stops renewing it: it frees itself one lifetime later unless given back first. */
  stopRenewing (request: FastifyRequest): void {
    const lease = request[kLease]
    if (lease !== null) for (const held of lease.held) this.leases.delete(held)
  }

  /**
   * `limit` (or `limitAt` while the caller is not known: `identity` undefined), from a callback
   * where a throw would be lost: it goes to Fastify instead.
   */
  private guard (route: RouteLimiter, endpointMetrics: EndpointMetrics, request: FastifyRequest, reply: FastifyReply, done: Done, cost: number | Error, identity: TenantIdentity | null | Error | undefined): void {
    try {
      if (identity === undefined) this.limitAt(route, endpointMetrics, request, reply, done, cost)
      else if (cost instanceof Error) done(cost)
      else this.limit(route, endpointMetrics, request, reply, done, cost, identity)
    } catch (err) {
      done(err as Error)
    }
  }

  /** Everything up to the store call; answers at once when no call is needed. */
  private limit (route: RouteLimiter, endpointMetrics: EndpointMetrics, request: FastifyRequest, reply: FastifyReply, done: Done, cost: number, identity: TenantIdentity | null | Error): void {
    if (identity instanceof Error) return done(identity) // the extractor failed and the option refuses
    const { options, metrics } = this
    const anonymous = identity === null
    const started = metrics.enabled ? performance.now() : 0
    const subject = anonymous ? options.anonymousKey(request) : identity.tenantId
    // An empty organization id is none (as the policies read it).
    const organizationId = anonymous || identity.organizationId === '' ? undefined : identity.organizationId ?? undefined
    const policy = this.policies.forRequest(anonymous ? undefined : subject, anonymous ? undefined : identity.tier ?? undefined, route, organizationId)
    const { tier, limits, bucketQuota, shadow } = policy
    const { bucket } = route
    const series = endpointMetrics.series(subject, anonymous, tier)
    const keys = this.keys.get(anonymous ? 'anonymous' : 'tenant', subject, bucket, organizationId)
    // Limits above the subject: its organization's, the route's shared budget (decided with it).
    const levels = this.levels.levelsOf(anonymous ? undefined : { organizationId, organizationTier: identity.organizationTier ?? undefined }, route.shared)
    // What handlers see on request.rateLimit; the decision is filled in once the store has answered.
    const context = new RequestRateLimit(subject, anonymous, tier, organizationId, bucket, cost, limits, shadow, keys, bucketQuota, levels, route.refundWhen, reply)
    request.rateLimit = context

    if (policy.block !== undefined) {
      series.request('rejected')
      series.rejection('blocked')
      reply.code(403)
      reply.header('x-ratelimit-error', 'blocked')
      done(refuse(request, new TenantBlockedError(policy.block.reason ?? 'This tenant is blocked'), 'blocked'))
      return
    }
    if (isUnlimited(limits) && bucketQuota === Infinity && levels === undefined) {
      series.request('bypassed')
      done()
      return
    }

    const cached = this.rejections.get(keys.counters, cost, limits, bucketQuota, this.policies.generation)
    if (cached !== undefined) {
      this.apply(new PendingDecision(this.steps, request, reply, done, context, series, keys, bucketQuota, levels, '', started), cached)
      return
    }
    const leaseId = limits.concurrentRequests === Infinity && !levels?.some(holdsLeases) ? '' : this.leasePrefix + (++this.leaseSeq).toString(36)
    const pending = new PendingDecision(this.steps, request, reply, done, context, series, keys, bucketQuota, levels, leaseId, started)
    // A tenant's month counts stay readable after the month (usage reports), named by its id and tier.
    if (!anonymous) this.usageNotes.note(keys, subject, tier, levels, bucket)
    admitInto(this.store, { keys, cost, limits, leaseId, bucketQuota, levels, keepUsage: !anonymous }, pending)
  }

  /** The store's answer for a pending request, and its failure: one pair of functions per limiter, none per request. */
  private readonly steps: LimiterSteps = {
    settle: (pending, decision) => {
      // Only the subject's own refusal is remembered: it holds on every route sharing its counters,
      // whatever levels they add; a level's refusal belongs to that level.
      if (!decision.allowed && (decision.scope ?? 'tenant') === 'tenant') this.rejections.set(pending.keys.counters, pending.context.cost, pending.context.limits, pending.bucketQuota, decision, this.policies.generation)
      this.apply(pending, decision)
    },
    storeFailed: (pending, err) => this.storeFailed(pending, err)
  }

  /** Headers, the lease, metrics; then the request goes on, or is answered 429. */
  private apply (pending: PendingDecision, decision: Decision): void {
    const { options, metrics } = this
    const { request, reply, context, series, leaseId } = pending
    if (metrics.enabled) metrics.decision((performance.now() - pending.started) / 1000, decision.degraded === true ? 'fallback' : this.store.kind)

    context.decision = decision
    if (options.headers === 'compact') setCompactRateLimitHeaders(reply, decision)
    else if (options.headers) setRateLimitHeaders(reply, decision)
    if (options.ietfHeaders !== false) setIetfHeaders(reply, decision, context.cost, options.ietfHeaders)
    if (decision.degraded === true) {
      reply.header('x-ratelimit-status', 'degraded')
      this.degraded.note('fallback')
    }
    if (decision.allowed) {
      if (decision.crossings !== undefined) {
        this.alerts?.publish(decision, { subject: context.subject, tier: context.tier, bucket: context.bucket, keys: pending.keys, levels: pending.levels })
      }
      if (clientGone(request)) {
        // The client left while this was decided: nobody will read the answer, so the handler does
        // not run and the lease goes back now (no onResponse will ever come for it).
        if (leaseId !== '') for (const keys of leaseKeysOf(pending.keys, context.limits, pending.levels)) this.store.release(keys, leaseId)
        if (metrics.enabled) recordAdmission(metrics, decision, series)
        this.finish(request, true) // the request's end: refundWhen may give its reservation back
        reply.hijack()
        pending.done()
        return
      }
      if (leaseId !== '') {
        const held = leaseKeysOf(pending.keys, context.limits, pending.levels).map(keys => ({ keys, id: leaseId }))
        request[kLease] = { id: leaseId, tier: context.tier, held }
        for (const lease of held) this.leases.add(lease)
        metrics.leaseTaken(context.tier)
      }
      if (metrics.enabled) recordAdmission(metrics, decision, series)
      pending.done()
      return
    }
    const reason = decision.reason as RejectReason
    if (context.shadow) {
      // Dry run: report what enforcement would have done, then let the request through.
      reply.header('x-ratelimit-shadow', reason)
      request.log.info({ tenant: context.subject, tier: context.tier, reason }, 'rate limiting (shadow): would reject')
      series.request('shadow')
      pending.done()
      return
    }
    series.request('rejected')
    series.rejection(reason, decision.scope ?? 'tenant')
    pending.done(this.refusal(request, reply, context as RateLimitContext & { decision: Decision }))
  }

  /**
   * The tenant of a request, null for anonymous, or the error to answer with when the extractor
   * failed and the option refuses. A throw, a malformed result and a timeout are all failures. A
   * synchronous extractor is answered synchronously (no promise on the request path).
   */
  private identify (request: FastifyRequest, reply: FastifyReply): TenantIdentity | null | Error | Promise<TenantIdentity | null | Error> {
    try {
      const identity = (this.options.tenantExtractor as NonNullable<ResolvedOptions['tenantExtractor']>)(request)
      // Only an asynchronous answer needs a deadline.
      if (isThenable(identity)) {
        return withDeadline(identity, this.options.extractorTimeoutMs, 'tenantExtractor')
          .then(checkIdentity)
          .catch((err: unknown) => this.extractorFailed(err, request, reply))
      }
      return checkIdentity(identity)
    } catch (err) {
      return this.extractorFailed(err, request, reply)
    }
  }

  private extractorFailed (err: unknown, request: FastifyRequest, reply: FastifyReply): null | Error {
    const { options } = this
    request.log.warn({ err }, 'rate limiting: tenant extractor failed; %s', options.onExtractorError)
    if (options.onExtractorError === 'anonymous') return null
    const refusal = options.onExtractorError === 'unauthorized' ? new CallerUnidentifiedError() : new ExtractorFailedError()
    reply.code(refusal.statusCode as number)
    return refusal
  }

  /**
   * The 429 handed to Fastify: headers set here (the app's error handler keeps them unless it
   * removes them), the body by Fastify's error handling, or what `errorResponseBuilder` returns.
   */
  private refusal (request: FastifyRequest, reply: FastifyReply, context: RateLimitContext & { decision: Decision }): Error {
    const { decision } = context
    const reason = decision.reason as RejectReason
    const retryAfter = retryAfterSeconds(decision)
    reply.code(429)
    reply.header('retry-after', retryAfter)
    reply.header('x-ratelimit-error', reason)
    reply.header('x-ratelimit-scope', decision.scope ?? 'tenant')
    this.options.onExceeded?.(request, reply, context)
    const built = this.options.errorResponseBuilder?.(request, context)
    // A body the builder made is handed over as it is, as @fastify/rate-limit does: Fastify's own
    // error handler sends a plain object as the body, an app's error handler receives it.
    if (built !== undefined && built !== null) return built as Error
    return refuse(request, new RateLimitExceededError(`${MESSAGES[reason]}, retry in ${retryAfter} second${retryAfter === 1 ? '' : 's'}`), reason)
  }

  /** The store failed this request: fail open or closed, as the options say. */
  private storeFailed (pending: PendingDecision, err: unknown): void {
    const { options, metrics } = this
    const { request, reply } = pending
    metrics.storeError(this.store.kind)
    metrics.failDecision(options.failMode)
    pending.series.request('error')
    // One line per outage and a summary (see DegradedLog); each request's own only at debug level.
    this.degraded.note(options.failMode === 'open' ? 'admitted' : 'refused', err)
    request.log.debug({ err }, 'rate limiting: store failed, %s', options.failMode === 'open' ? 'admitting' : 'refusing')
    if (options.failMode === 'open') {
      reply.header('x-ratelimit-status', 'degraded')
      pending.done()
      return
    }
    reply.code(503)
    reply.header('retry-after', 1)
    pending.done(new StoreUnavailableRefusalError())
  }
}

/** The extractor's answer when it is well formed (null: anonymous); throws otherwise. */
function checkIdentity (identity: TenantIdentity | null | undefined): TenantIdentity | null {
  if (identity === null || identity === undefined) return null
  if (typeof identity !== 'object' || typeof identity.tenantId !== 'string' || !optionalString(identity.tier) ||
      !optionalString(identity.organizationId) || !optionalString(identity.organizationTier)) {
    throw new TypeError('tenantExtractor must return { tenantId: string, tier?: string, organizationId?: string, organizationTier?: string } or null')
  }
  return identity
}

function optionalString (value: unknown): boolean {
  return value === undefined || value === null || typeof value === 'string'
}

function holdsLeases (level: AdmitLevel): boolean {
  return level.limits.concurrentRequests !== Infinity
}

function isThenable<T> (value: T | Promise<T>): value is Promise<T> {
  return typeof (value as { then?: unknown } | null)?.then === 'function'
}
