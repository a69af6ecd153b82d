// How the store is wired, and what each wiring does at boot: a `redis` URL boots while Redis is down
// and takes over when it answers; @fastify/redis waits for Redis; memory nobody chose is warned
// about; a fastify.redis the plugin cannot use fails boot.
import fastifyRedis from '@fastify/redis'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import rateLimiting, { MemoryStore, type RateLimitingOptions } from '../dist/index.js'
import { freePort, privateRedis, sharedRedis, uniquePrefix } from './helpers/redis.js'
import { within } from './helpers/wait.js'

interface Logged { level: number, msg: string }
const WARN = 40

/** A Fastify app whose log lines (pino JSON) are collected. */
function loggedApp (t: Test, server: FastifyServerOptions = {}): { app: FastifyInstance, lines: Logged[] } {
  const lines: Logged[] = []
  const app = Fastify({ ...server, logger: { level: 'info', stream: { write: (line: string) => { lines.push(JSON.parse(line) as Logged) } } } })
  t.teardown(() => app.close())
  return { app, lines }
}

const about = (lines: Logged[], text: string): Logged[] => lines.filter(line => line.msg.includes(text))

/** Collects what is written to stderr (ioredis reports errors nobody listens for there). */
function captureStderr (t: Test): string[] {
  const written: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    written.push(String(chunk))
    return (write as (...args: unknown[]) => boolean)(chunk, ...rest)
  }) as typeof process.stderr.write
  t.teardown(() => { process.stderr.write = write })
  return written
}

t.test('redis as a URL: boots while Redis is down, degrades, then decides on Redis once it starts', async t => {
  const stderr = captureStderr(t)
  const port = await freePort()
  const url = `redis://127.0.0.1:${port}`
  const keyPrefix = uniquePrefix(t)
  const { app, lines } = loggedApp(t)
  const started = Date.now()
  await app.register(rateLimiting, { redis: url, keyPrefix, failMode: 'open' })
  app.get('/', async () => 'ok')
  await app.ready()
  t.ok(Date.now() - started < 5000, 'boot does not wait for Redis (policies give up after 2 s)')

  for (let i = 0; i < 10; i++) {
    const res = await app.inject('/')
    t.equal(res.statusCode, 200, 'failMode open admits while Redis is down')
    t.equal(res.headers['x-ratelimit-status'], 'degraded')
  }

  const redis = await privateRedis(t, [], port)
  const recovered = await within(15_000, async () => (await app.inject('/')).headers['x-ratelimit-status'] === undefined)
  t.ok(recovered < 15_000, `decisions come from Redis again (after ${recovered} ms)`)
  const res = await app.inject('/')
  t.equal(res.headers['x-ratelimit-status'], undefined, 'not degraded')
  t.ok(Number(res.headers['x-ratelimit-remaining-minute']) < 4, 'Redis counts this minute')
  const observer = new Redis(redis.url)
  t.teardown(() => observer.disconnect())
  t.ok((await observer.keys(`${keyPrefix}:*`)).length > 0, 'the counters live in Redis')

  t.equal(about(lines, 'Redis connection failing').length, 1, 'the outage is logged once, however many reconnects failed')
  t.equal(about(lines, 'Redis connection failing')[0]?.level, WARN)
  t.equal(about(lines, 'Redis connection ready').length, 1, 'and its end once')
  t.notOk(stderr.some(chunk => chunk.includes('Unhandled error event')), 'no client of the plugin reports an unhandled error')

  const observerId = await observer.client('ID') as number
  const ours = async (): Promise<number> => (await observer.client('LIST') as string).split('\n').filter(line => line.startsWith('id=') && !line.startsWith(`id=${observerId} `)).length
  t.ok(await ours() >= 1, 'the plugin is connected')
  await app.close()
  t.ok(await within(2000, async () => await ours() === 0) < 2000, 'closing the app closes the client the plugin created')
})

t.test('redis as a URL: closing while Redis is still down does not wait for it', async t => {
  const { app } = loggedApp(t)
  await app.register(rateLimiting, { redis: `redis://127.0.0.1:${await freePort()}`, policyReloadSeconds: 1 })
  await app.ready()
  const started = Date.now()
  await app.close()
  t.ok(Date.now() - started < 1000, 'closed at once')
})

t.test('redis as a URL with requireStoreAtBoot: boot fails, and the client the plugin created is closed', async t => {
  const stderr = captureStderr(t)
  const port = await freePort()
  const app = Fastify()
  app.register(rateLimiting, { redis: `redis://127.0.0.1:${port}`, requireStoreAtBoot: true })
  await t.rejects(async () => { await app.ready() }, { code: 'FST_MAESTRO_RL_STORE_UNAVAILABLE_AT_BOOT' })
  // A client left behind would keep reconnecting (every few hundred ms by now) and find this server.
  const redis = await privateRedis(t, [], port)
  const observer = new Redis(redis.url)
  t.teardown(() => observer.disconnect())
  await new Promise(resolve => setTimeout(resolve, 2500))
  t.equal((await observer.client('LIST') as string).trim().split('\n').length, 1, 'no one but the observer connects: nothing left reconnecting')
  t.notOk(stderr.some(chunk => chunk.includes('Unhandled error event')))
})

t.test('an ioredis client of your own: boots while Redis is down too, and is left open', async t => {
  const port = await freePort()
  const client = new Redis(`redis://127.0.0.1:${port}`)
  client.on('error', () => {}) // the client is the app's: so is listening for its errors
  t.teardown(() => client.disconnect())
  const { app } = loggedApp(t)
  await app.register(rateLimiting, { redis: client })
  app.get('/', async () => 'ok')
  await app.ready()
  t.equal((await app.inject('/')).headers['x-ratelimit-status'], 'degraded')
  await app.close()
  t.not(client.status, 'end', 'the plugin never closes a client it did not create')
})

t.test('@fastify/redis with a URL while Redis is down: registration waits for Redis and boot fails', async t => {
  const app = Fastify({ pluginTimeout: 500 })
  await app.register(fastifyRedis, { url: `redis://127.0.0.1:${await freePort()}`, lazyConnect: true })
    .register(rateLimiting)
    .ready()
    .then(() => t.fail('booted'), (err: { code?: string }) => t.equal(err.code, 'FST_ERR_PLUGIN_TIMEOUT', 'boot fails after pluginTimeout, lazyConnect or not'))
  // Its client keeps reconnecting; a failed boot leaves it to the caller.
  ;(app as unknown as { redis: Redis }).redis.disconnect()
})

t.test('no store and no Redis: the memory store, with a warning saying how to choose', async t => {
  const { app, lines } = loggedApp(t)
  await app.register(rateLimiting)
  await app.ready()
  t.equal(app.rateLimitStore.kind, 'memory')
  const warning = about(lines, 'in-memory store decides')
  t.equal(warning.length, 1)
  t.equal(warning[0]?.level, WARN)
  t.match(warning[0]?.msg, /each instance enforces its own limits.*store: 'memory'/)
})

t.test("store: 'memory' chooses memory on purpose: no warning", async t => {
  const { app, lines } = loggedApp(t)
  await app.register(rateLimiting, { store: 'memory', memoryMaxKeys: 10 })
  app.get('/', async () => 'ok')
  await app.ready()
  t.ok(app.rateLimitStore instanceof MemoryStore)
  t.same(lines.filter(line => line.level >= WARN), [], 'nothing at warn')
  t.equal(about(lines, 'using the memory store (memory option)').length, 1)
  t.equal((await app.inject('/')).headers['x-ratelimit-limit-minute'], '5', 'it limits')
})

t.test('@fastify/redis registered after the plugin: boot fails saying what to do', async t => {
  const client = sharedRedis(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting)
  await app.register(fastifyRedis, { client })
  await t.rejects(async () => { await app.ready() }, {
    code: 'FST_MAESTRO_RL_REDIS_NOT_USED',
    message: /decorated after @maestro\/rate-limiting.*Register @fastify\/redis before the plugin.*`redis` option.*store: 'memory'/
  })
})

t.test('@fastify/redis before the plugin: its client decides, no warning', async t => {
  const client = sharedRedis(t)
  const { app, lines } = loggedApp(t)
  await app.register(fastifyRedis, { client })
  await app.register(rateLimiting, { keyPrefix: uniquePrefix(t, client) })
  await app.ready()
  t.equal(app.rateLimitStore.kind, 'redis')
  t.same(lines.filter(line => line.level >= WARN), [])
})

t.test('@fastify/redis under a namespace: registration fails naming the option to use', async t => {
  const client = sharedRedis(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyRedis, { client, namespace: 'limits' })
  app.register(rateLimiting)
  await t.rejects(async () => { await app.ready() }, {
    code: 'FST_MAESTRO_RL_REDIS_NOT_USED',
    message: /not an ioredis client.*redis: fastify\.redis\.<namespace>/
  })
})

t.test('a namespaced client passed as redis, or store: memory beside fastify.redis: boots', async t => {
  const client = sharedRedis(t)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(fastifyRedis, { client, namespace: 'limits' })
  await app.register(rateLimiting, { redis: app.redis.limits, keyPrefix: uniquePrefix(t, client) })
  await app.ready()
  t.equal(app.rateLimitStore.kind, 'redis')

  const late = Fastify()
  t.teardown(() => late.close())
  await late.register(rateLimiting, { store: 'memory' })
  await late.register(fastifyRedis, { client })
  await late.ready()
  t.equal(late.rateLimitStore.kind, 'memory', 'memory chosen on purpose is kept')
})

t.test('invalid redis and store values name the option, never the URL', async t => {
  const boot = async (options: RateLimitingOptions): Promise<unknown> => {
    const app = Fastify()
    await app.register(rateLimiting, options)
    return await app.ready()
  }
  await t.rejects(boot({ redis: 'http://127.0.0.1:6379' }), { code: 'FST_MAESTRO_RL_INVALID_OPTION', message: /options\.redis must be a redis:\/\/ or rediss:\/\/ URL, not http:/ })
  const secret = 'redis://:s3cret@host:port'
  await t.rejects(boot({ redis: secret }), { code: 'FST_MAESTRO_RL_INVALID_OPTION', message: /options\.redis .*is not shown/ })
  await boot({ redis: secret }).catch((err: Error) => t.notMatch(err.message, /s3cret/, 'the password stays out of the message'))
  await t.rejects(boot({ store: 'mem' as 'memory' }), { code: 'FST_MAESTRO_RL_INVALID_OPTION', message: /options\.store/ })
  await t.rejects(boot({ redis: '' }), { code: 'FST_MAESTRO_RL_INVALID_OPTION', message: /options\.redis/ })
})
