// Stopping a long-running events command on Ctrl-C or SIGTERM: the command finishes what it must, then returns.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Redis } from 'ioredis'

/**
 * A signal aborted by the first SIGINT or SIGTERM. The handlers are `once`: a second signal gets the
 * default action and ends the process at once, for when the orderly stop takes too long.
 */
export function stopOnSignals (): { signal: AbortSignal, stop: () => void, dispose: () => void } {
  const controller = new AbortController()
  const stop = (): void => controller.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return {
    signal: controller.signal,
    stop,
    dispose: () => { process.off('SIGINT', stop); process.off('SIGTERM', stop) }
  }
}

/**
 * Runs a blocking read (XREAD … BLOCK) that a stop cuts short by closing the connection: nothing else
 * waits on it then, and an entry the server handed out just before stays pending in the group.
 * Resolves undefined when stopped (a read that times out resolves null: check the signal, not the reply).
 */
export async function readUnlessStopped<T> (redis: Redis, signal: AbortSignal, read: () => Promise<T>): Promise<T | undefined> {
  if (signal.aborted) return undefined
  const cut = (): void => redis.disconnect()
  signal.addEventListener('abort', cut, { once: true })
  try {
    return await read()
  } catch (err) {
    if (signal.aborted) return undefined
    throw err
  } finally {
    signal.removeEventListener('abort', cut)
  }
}

/** Waits `ms`; true when the full time passed, false when a stop came first. */
export async function pause (ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false
  try {
    await sleep(ms, undefined, { signal })
    return true
  } catch {
    return false
  }
}
