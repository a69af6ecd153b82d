// A redis-server of one's own on loopback, shared by the tests, the soak and the benchmark: a free
// port (never 6379, where a machine's own Redis usually listens) and the wait until it answers.
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import { Redis } from 'ioredis'

export async function freePort () {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const server = createServer()
      server.unref()
      server.on('error', reject)
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address()
        server.close(() => resolve(port))
      })
    })
    if (port !== 6379) return port
  }
}

/**
 * Resolves once the redis-server started as `child` on 127.0.0.1:`port` answers PING. Rejects as
 * soon as that process has exited, or after about five seconds.
 */
export async function waitForRedis (port, child) {
  for (let attempt = 0; ; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`redis-server exited at start (port ${port} taken?)`)
    const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    try {
      await probe.connect()
      await probe.ping()
      return
    } catch (err) {
      if (attempt > 100) throw err
      await sleep(50)
    } finally {
      probe.disconnect()
    }
  }
}
