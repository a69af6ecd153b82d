// Real Redis for tests: the shared server (REDIS_URL or 127.0.0.1:6379) with a unique key prefix per
// test, or a private redis-server on a free loopback port for tests that must own their server.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { Redis, type RedisOptions } from 'ioredis'
import { freePort, waitForRedis } from '../../scripts/loopback-redis.mjs'

export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

interface Teardown { teardown (fn: () => unknown): void }

/** A client on the shared server, closed when the test ends. */
export function sharedRedis (t: Teardown, options: RedisOptions = {}): Redis {
  const client = new Redis(REDIS_URL, options)
  t.teardown(() => client.disconnect())
  return client
}

/** A key prefix no other test uses; its keys are deleted when the test ends. */
export function uniquePrefix (t: Teardown, client?: Redis): string {
  const prefix = 'test-' + randomBytes(6).toString('hex')
  if (client !== undefined) {
    t.teardown(async () => {
      if (client.status !== 'ready') return
      const keys = await client.keys(`${prefix}:*`)
      if (keys.length > 0) await client.del(...keys)
    })
  }
  return prefix
}

export { freePort }

export interface PrivateRedis {
  readonly port: number
  readonly url: string
  /** Pid of the running server (changes after restart). */
  readonly pid: number
  /** Kills the server (SIGKILL): like a crash. */
  stop (): Promise<void>
  /** Starts a fresh server on the same port (it keeps nothing from before). */
  restart (): Promise<void>
  /** SIGSTOP / SIGCONT: a hung server that keeps its connections and data. */
  pause (): void
  resume (): void
}

/** Starts a redis-server of this test's own on a free loopback port; stopped when the test ends. */
export async function privateRedis (t: Teardown, extraArgs: string[] = [], fixedPort?: number): Promise<PrivateRedis> {
  const port = fixedPort ?? await freePort()
  let child: ChildProcess
  let exited: Promise<void>
  const launch = async (): Promise<void> => {
    child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs], { stdio: 'ignore' })
    exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
    await waitForRedis(port, child)
  }
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGCONT')
      child.kill('SIGKILL')
    }
    await exited
  }
  await launch()
  t.teardown(stop)
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid () { return child.pid as number },
    stop,
    restart: async () => { await stop(); await launch() },
    pause: () => { child.kill('SIGSTOP') },
    resume: () => { child.kill('SIGCONT') }
  }
}

/** Calls per command since the last CONFIG RESETSTAT (commands run inside scripts included). */
export async function commandCalls (client: Redis): Promise<Record<string, number>> {
  const stats = await client.info('commandstats')
  return Object.fromEntries([...stats.matchAll(/cmdstat_([a-z|]+):calls=(\d+)/g)].map(m => [m[1], Number(m[2])]))
}
