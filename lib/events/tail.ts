// Prints the quota-alert stream as it grows: one event per line of JSON, for people and scripts.
import type { Redis } from 'ioredis'
import { entriesOf, readEntry } from './stream-entry.js'
import { readUnlessStopped } from './stopping.js'

export interface TailOptions {
  stream: string
  /** From the first entry kept; otherwise from the entries appended after the start. */
  fromStart: boolean
  /** Return after this many events; undefined: until stopped. */
  count?: number
  signal: AbortSignal
  /** One event as one line of JSON (without the newline). */
  print: (line: string) => void
  log: (line: string) => void
}

const BATCH = 100

/** Returns the number of events printed. */
export async function tailEvents (redis: Redis, options: TailOptions): Promise<number> {
  const { stream, count = Infinity, signal, print, log } = options
  let after = options.fromStart ? '0-0' : await lastEntryId(redis, stream)
  log(`tailing ${stream} ${options.fromStart ? 'from its first entry' : 'from now'}`)
  let printed = 0
  while (printed < count) {
    const reply = await readUnlessStopped(redis, signal, async () =>
      await redis.xread('COUNT', Math.min(BATCH, count - printed), 'BLOCK', 0, 'STREAMS', stream, after))
    if (signal.aborted) break
    for (const raw of entriesOf(reply)) {
      after = raw[0]
      const entry = readEntry(raw)
      if (entry.kind === 'event') {
        print(JSON.stringify(JSON.parse(entry.json))) // one line, whatever spacing it was stored with
        printed++
      } else if (entry.kind === 'malformed') {
        log(`entry ${entry.entryId} is not a quota alert (${entry.reason}); skipped`)
      }
    }
  }
  return printed
}

/**
 * The id to read after for "from now". Not `$`: read again after a timeout or a batch, `$` would skip
 * entries appended in between.
 */
async function lastEntryId (redis: Redis, stream: string): Promise<string> {
  const [last] = await redis.xrevrange(stream, '+', '-', 'COUNT', 1)
  return last === undefined ? '0-0' : last[0]
}
