// A Redis outage is logged as what it is: a few lines when it starts, a summary while it lasts, a
// line when it ends; not a line and a stack per request.
import t from 'tap'
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import rateLimiting from '../dist/index.js'
import { listen } from './helpers/app.js'
import { privateRedis, uniquePrefix } from './helpers/redis.js'
import { setTimeout as sleep } from 'node:timers/promises'

interface LogLine { level: number, msg: string, err?: { stack?: string }, admitted?: number, refused?: number, causes?: Record<string, number> }

t.test('an outage under traffic logs once, then a summary; recovery is logged', async t => {
  const server = await privateRedis(t)
  const redis = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 50 })
  redis.on('error', () => {})
  t.teardown(() => redis.disconnect())
  if (redis.status !== 'ready') await new Promise(resolve => redis.once('ready', resolve))

  const lines: LogLine[] = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (line: string) => lines.push(JSON.parse(line)) } } })
  t.teardown(() => app.close())
  await app.register(rateLimiting, { redis, keyPrefix: uniquePrefix(t), breakerCooldownSeconds: 0.2 })
  app.get('/', async () => ({ ok: true }))
  const port = await listen(app)
  const plugin = (): LogLine[] => lines.filter(line => line.msg.startsWith('rate limiting'))

  t.equal((await fetch(`http://127.0.0.1:${port}/`)).headers.get('x-ratelimit-status'), null, 'decided by Redis')
  await server.stop()
  let degraded = 0
  const until = Date.now() + 11_000 // past one summary interval
  let requests = 0
  while (Date.now() < until) {
    const res = await fetch(`http://127.0.0.1:${port}/`)
    requests++
    if (res.status === 200 && res.headers.get('x-ratelimit-status') === 'degraded') degraded++
    await sleep(20)
  }
  t.equal(degraded, requests, `every one of ${requests} requests admitted, degraded (failMode open)`)
  const during = plugin()
  const loud = during.filter(line => line.level >= 40)
  t.ok(loud.length <= 4, `${loud.length} warn/error lines for ${requests} requests: ${loud.map(l => l.msg).join(' | ')}`)
  t.ok(during.filter(line => line.err?.stack !== undefined).length <= 2, 'a stack at most for the outage\'s first lines, not per request')
  const summary = during.find(line => line.msg.includes('decisions without the store in the last'))
  t.ok(summary, 'a summary while the outage lasts')
  t.ok((summary?.admitted ?? 0) > 50, `it counts the admitted decisions (${summary?.admitted})`)
  t.ok(Object.keys(summary?.causes ?? {}).length >= 1, `and names their causes: ${JSON.stringify(summary?.causes)}`)
  t.ok(during.some(line => line.msg.includes('circuit open')), 'the breaker opening is logged')

  await server.restart()
  const back = Date.now() + 5000
  while (Date.now() < back) {
    const res = await fetch(`http://127.0.0.1:${port}/`)
    if (res.headers.get('x-ratelimit-status') === null) break
    await sleep(50)
  }
  t.ok(plugin().some(line => line.msg.includes('circuit closed')), 'the recovery is logged')
})
