// Waits between delivery attempts: exponential, with jitter so that forwarders retrying against one
// receiver that comes back do not all knock at the same moment.

/** The first wait, before doubling; a smaller cap wins. */
export const FIRST_BACKOFF_MS = 500

/**
 * The wait after `failures` failed attempts (1 for the first): the exponential step capped by
 * `maxMs`, then a random point in its upper half ("equal jitter": never less than half the step).
 */
export function backoffDelay (failures: number, maxMs: number, random: () => number = Math.random): number {
  const step = Math.min(maxMs, FIRST_BACKOFF_MS * 2 ** Math.min(failures - 1, 30))
  return Math.round(step / 2 + random() * step / 2)
}
