// Polling for something that happens soon: how long it took, or Infinity if not within `ms`.
import { setTimeout as sleep } from 'node:timers/promises'

export async function within (ms: number, condition: () => Promise<boolean>): Promise<number> {
  const start = Date.now()
  while (Date.now() - start < ms) {
    if (await condition()) return Date.now() - start
    await sleep(5)
  }
  return Infinity
}
