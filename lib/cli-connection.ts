// What every maestro-rl command shares: its two error kinds and its connection to Redis.
import { Redis } from 'ioredis'

/** Bad usage: exit 2. */
export class UsageError extends Error {}
/** Redis cannot be reached or fails: exit 1. */
export class RedisError extends Error {}

/** The Redis URL to use and where it came from (`--redis`, `REDIS_URL` or the default), for messages. */
export function redisTarget (flag: string | undefined): { url: string, source: string } {
  if (flag !== undefined) return { url: flag, source: '--redis' }
  const fromEnv = process.env.REDIS_URL
  if (fromEnv !== undefined && fromEnv !== '') return { url: fromEnv, source: 'REDIS_URL' }
  return { url: 'redis://127.0.0.1:6379', source: 'the default' }
}

/**
 * A parsed URL fit for messages: `redis://user:secret@host/0?password=x` → `redis://user:***@host/0?password=***`.
 * Every query value goes too: ioredis reads options, a password among them, from the query.
 */
export function redact (parsed: URL): string {
  const shown = new URL(parsed.href)
  if (shown.password !== '') shown.password = '***'
  for (const name of new Set(shown.searchParams.keys())) shown.searchParams.set(name, '***')
  return shown.href
}

/** `source` names where the URL came from (`--redis` or `REDIS_URL`), for messages. */
export async function connect (url: string, source: string): Promise<Redis> {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    // Not echoed: a value that does not parse cannot be redacted, and it may hold a password.
    throw new UsageError(`${source} must be a redis:// or rediss:// URL (the value does not parse as a URL, and is not shown: it may hold a password)`)
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') throw new UsageError(`${source} must be a redis:// or rediss:// URL, got ${redact(parsed)}`)
  // Fail fast: no reconnection, no offline queue, a short connect timeout.
  const redis = new Redis(url, { lazyConnect: true, connectTimeout: 3000, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null })
  let cause: Error | undefined // the socket's own error says more than "Connection is closed."
  redis.on('error', (err: Error) => { cause ??= err })
  try {
    await redis.connect()
    await redis.ping()
    return redis
  } catch (err) {
    redis.disconnect()
    throw new RedisError(`cannot reach Redis at ${redact(parsed)}: ${(cause ?? err as Error).message}`)
  }
}
