// Before the suite: make sure a Redis answers, or say in one line how to get one.
import { Redis } from 'ioredis'

const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'
const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, connectTimeout: 3000 })
client.on('error', () => {})
try {
  await client.connect()
  await client.ping()
  client.disconnect()
} catch (err) {
  console.error(`No Redis at ${url} (${err.message}): start one with \`redis-server --port 6379 --save ''\` or set REDIS_URL, then run npm test again.`)
  process.exit(1)
}
