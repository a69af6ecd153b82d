// Real Redis for tests: the shared server (REDIS_URL or 127.0.0.1:6379) with a unique key prefix per
// test, or a private redis-server on a free loopback port for tests that must own their server.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis, type RedisOptions } from 'ioredis'

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

export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => resolve(typeof address === 'object' && address !== null ? address.port : 0))
    })
  })
}

export interface PrivateRedis {
  readonly port: number
  readonly url: string
  readonly pid: number
  stop (): Promise<void>
}

/** Starts a redis-server of this test's own on a free loopback port; stopped when the test ends. */
export async function privateRedis (t: Teardown, extraArgs: string[] = []): Promise<PrivateRedis> {
  const port = await freePort()
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', ...extraArgs], { stdio: 'ignore' })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exited
  }
  t.teardown(stop)
  const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
  probe.on('error', () => {})
  for (let attempt = 0; ; attempt++) {
    try {
      await probe.connect()
      await probe.ping()
      probe.disconnect()
      break
    } catch (err) {
      if (attempt > 100) throw err
      await sleep(50)
    }
  }
  return { port, url: `redis://127.0.0.1:${port}`, pid: child.pid as number, stop }
}
