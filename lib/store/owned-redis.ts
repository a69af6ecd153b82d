// The client the plugin creates from a `redis` URL. It is the plugin's: the plugin listens for its
// errors (an ioredis client without an 'error' listener prints "[ioredis] Unhandled error event" on
// every failed reconnect) and closes it. It never waits for Redis: the service boots while Redis is
// down, follows failMode, and uses Redis as soon as it answers (ioredis reconnects by itself).
import type { FastifyBaseLogger } from 'fastify'
import { Redis } from 'ioredis'

export function createOwnedRedis (url: string, log: FastifyBaseLogger): Redis {
  const client = new Redis(url)
  // One line per outage, not one per reconnect attempt; the breaker logs what decisions do meanwhile.
  let reported = false
  client.on('error', (err: Error) => {
    if (reported) return
    reported = true
    log.warn({ err }, 'rate limiting: Redis connection failing; retrying in the background (decisions follow failMode meanwhile)')
  })
  client.on('ready', () => {
    if (reported) log.info('rate limiting: Redis connection ready')
    reported = false
  })
  return client
}

/** Closes the plugin's own client: gracefully when connected, at once when not (QUIT would wait for a reconnect). */
export async function closeOwnedRedis (client: Redis): Promise<void> {
  if (client.status === 'ready') await client.quit().catch(() => client.disconnect())
  else client.disconnect()
}
