// Every error this package raises, with a stable code. Messages name the offending field.
import createError from '@fastify/error'

/** An option passed to the plugin is invalid. Raised at registration. */
export const InvalidOptionError = createError<'FST_MAESTRO_RL_INVALID_OPTION', [string]>(
  'FST_MAESTRO_RL_INVALID_OPTION', 'Invalid @maestro/rate-limiting option: %s', 500, TypeError)

/** A route's `config.rateLimit` is invalid. Raised when the route is added, so boot fails. */
export const InvalidRouteConfigError = createError<'FST_MAESTRO_RL_INVALID_ROUTE_CONFIG', [string, string]>(
  'FST_MAESTRO_RL_INVALID_ROUTE_CONFIG', 'Invalid config.rateLimit on route %s: %s', 500, TypeError)

/** The plugin was registered twice on one Fastify instance. */
export const AlreadyRegisteredError = createError<'FST_MAESTRO_RL_ALREADY_REGISTERED'>(
  'FST_MAESTRO_RL_ALREADY_REGISTERED', '@maestro/rate-limiting is already registered on this instance', 500)

/** A rejected request: the code of the 429 refusal. */
export const RATE_LIMITED_CODE = 'FST_MAESTRO_RL_RATE_LIMITED'

/** The store answered with something the plugin cannot read (a version mismatch, a foreign key). */
export const StoreReplyError = createError<'FST_MAESTRO_RL_STORE_REPLY', [string]>(
  'FST_MAESTRO_RL_STORE_REPLY', 'Unexpected reply from the rate-limit store: %s', 500)

/** A policy change was refused; nothing was stored. */
export const InvalidPolicyError = createError<'FST_MAESTRO_RL_INVALID_POLICY', [string]>(
  'FST_MAESTRO_RL_INVALID_POLICY', 'Invalid rate-limit policy: %s', 400, TypeError)

/** The request's tenant is blocked by an operator: the code of the 403 refusal. */
export const BLOCKED_CODE = 'FST_MAESTRO_RL_BLOCKED'

// Refusals. The limiter hands each to Fastify like any other error, so the app's error handler,
// `onError` and `onSend` hooks see them. They are an expected answer, not a fault: no stack trace is
// captured (a busy limiter makes thousands a second).

/** Over a window, the monthly quota or the concurrency limit (`reason` says which). */
export const RateLimitExceededError = createError<typeof RATE_LIMITED_CODE, [string]>(
  RATE_LIMITED_CODE, '%s', 429, Error, false)

/** The tenant is blocked by an operator; the message is the block's reason. */
export const TenantBlockedError = createError<typeof BLOCKED_CODE, [string]>(
  BLOCKED_CODE, '%s', 403, Error, false)

/** The store could not decide and `failMode` is `closed`. */
export const StoreUnavailableRefusalError = createError<'FST_MAESTRO_RL_STORE_UNAVAILABLE'>(
  'FST_MAESTRO_RL_STORE_UNAVAILABLE', 'Rate limiting is unavailable, retry shortly', 503, Error, false)

/** The tenant extractor failed and `onExtractorError` is `unauthorized`. */
export const CallerUnidentifiedError = createError<'FST_MAESTRO_RL_EXTRACTOR_FAILED'>(
  'FST_MAESTRO_RL_EXTRACTOR_FAILED', 'Could not identify the caller', 401, Error, false)

/** The tenant extractor failed and `onExtractorError` is `error`. */
export const ExtractorFailedError = createError<'FST_MAESTRO_RL_EXTRACTOR_FAILED'>(
  'FST_MAESTRO_RL_EXTRACTOR_FAILED', 'Could not identify the caller, retry later', 500, Error, false)

/** The admin routes were registered without an `authorize` function; they must never be public. */
export const AdminAuthorizationRequiredError = createError<'FST_MAESTRO_RL_ADMIN_AUTHORIZATION_REQUIRED'>(
  'FST_MAESTRO_RL_ADMIN_AUTHORIZATION_REQUIRED',
  '@maestro/rate-limiting/admin needs an authorize(request, reply) function: the admin routes change every tenant\'s limits and must not be public',
  500, TypeError)

/** `requireStoreAtBoot` is set and Redis did not answer at registration. */
export const StoreUnavailableAtBootError = createError<'FST_MAESTRO_RL_STORE_UNAVAILABLE_AT_BOOT', [string]>(
  'FST_MAESTRO_RL_STORE_UNAVAILABLE_AT_BOOT', 'Redis did not answer at boot (requireStoreAtBoot): %s', 500)

/**
 * `fastify.redis` exists but the plugin chose the in-memory store without being asked to: @fastify/redis
 * was registered after the plugin, or under a namespace. Each instance would enforce its own limits.
 */
export const RedisNotUsedError = createError<'FST_MAESTRO_RL_REDIS_NOT_USED', [string]>(
  'FST_MAESTRO_RL_REDIS_NOT_USED',
  '@maestro/rate-limiting: %s, so the plugin would use the in-memory store and every instance would enforce its own limits. ' +
  'Register @fastify/redis before the plugin, pass the client or a URL as the `redis` option, or set `store: \'memory\'` to keep per-instance limits on purpose',
  500)

/** A call of `fastify.rateLimiter` with arguments it cannot take (the message names the argument). */
export const InvalidLimiterCallError = createError<'FST_MAESTRO_RL_INVALID_CALL', [string]>(
  'FST_MAESTRO_RL_INVALID_CALL', 'Invalid rate limiter call: %s', 500, TypeError)

/**
 * A route's `config.rateLimit.cost` function threw, rejected or returned something other than a
 * whole number >= 0: a fault of the route, answered 500 rather than counted at a guessed cost.
 */
export const RouteCostError = createError<'FST_MAESTRO_RL_INVALID_COST', [string, string, { cause: unknown }?]>(
  'FST_MAESTRO_RL_INVALID_COST', 'config.rateLimit.cost of route %s %s', 500)

/** `request.rateLimit.settle()` called twice, too late, or with a cost that is not a whole number >= 0. */
export const InvalidSettleError = createError<'FST_MAESTRO_RL_INVALID_SETTLE', [string]>(
  'FST_MAESTRO_RL_INVALID_SETTLE', 'Invalid request.rateLimit.settle(): %s', 500, TypeError)
