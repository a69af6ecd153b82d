// Reads one month's usage records from Redis, a page at a time: SCAN each master (one Redis, or
// every master of a Cluster), then the page's hashes in one pipeline, then its records, before the
// next page is asked for. Memory holds one page whatever the number of subjects.
import type { Redis } from 'ioredis'
import type { RedisClient } from './lua-script.js'
import type { UsageRecord } from './types.js'
import { parseUsageHash, recordsOf, usageKeyPattern } from './usage-record.js'

/** Keys asked for per SCAN call (a hint to Redis: a page may hold more or fewer). */
const SCAN_COUNT = 1000

export async function * scanUsageMonth (client: RedisClient, month: string, keyPrefix: string): AsyncGenerator<UsageRecord> {
  const pattern = usageKeyPattern(keyPrefix, month)
  const nodes: Redis[] = 'nodes' in client ? client.nodes('master') : [client]
  for (const node of nodes) {
    let cursor = '0'
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', SCAN_COUNT)
      cursor = next
      if (keys.length === 0) continue
      const hashes = await readHashes(client, node, keys)
      for (let i = 0; i < keys.length; i++) {
        const usage = parseUsageHash(keys[i], hashes[i])
        if (usage !== undefined) yield * recordsOf(usage)
      }
    } while (cursor !== '0')
  }
}

/**
 * HGETALL of every key in one pipeline to the node that listed them. A key that moved since (a
 * Cluster resharding: MOVED, ASK) is read again through the client, which follows the redirection.
 */
async function readHashes (client: RedisClient, node: Redis, keys: string[]): Promise<Array<Record<string, string>>> {
  const pipeline = node.pipeline()
  for (const key of keys) pipeline.hgetall(key)
  const replies = await pipeline.exec() ?? []
  return await Promise.all(keys.map(async (key, i) => {
    const [err, hash] = replies[i] ?? [new Error('no reply')]
    if (err === null) return hash as Record<string, string>
    if (node === client) throw err
    return await client.hgetall(key)
  }))
}
