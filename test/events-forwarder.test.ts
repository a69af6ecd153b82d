// maestro-rl events tail / forward, run as child processes of the built CLI against real Redis and a
// real HTTP receiver on a loopback port. Events are appended exactly as the plugin stores them.
import { spawn, type ChildProcess } from 'node:child_process'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import Fastify from 'fastify'
import rateLimiting, { type QuotaAlertEvent } from '../dist/index.js'
import type { Redis } from 'ioredis'
import { runEventsCommand } from '../dist/events/command.js'
import { idempotencyKey } from '../dist/events/http-post.js'
import { run } from './helpers/cli.js'
import { REDIS_URL, sharedRedis, uniquePrefix } from './helpers/redis.js'
import { within } from './helpers/wait.js'

const CLI = fileURLToPath(new URL('../dist/cli.js', import.meta.url))

function alert (tenantId: string, threshold = 0.8): QuotaAlertEvent {
  const quota = 1000
  return {
    id: `2026-12:tenant:${tenantId}:-:${threshold}:${quota}`,
    scope: 'tenant',
    tenantId,
    tier: 'starter',
    bucket: null,
    month: '2026-12',
    threshold,
    used: quota * threshold,
    quota,
    at: Date.now()
  }
}

/** As the plugin appends: `XADD <key> MAXLEN ~ <n> * id <event id> event <event JSON>`. */
async function append (redis: Redis, stream: string, event: QuotaAlertEvent): Promise<string> {
  return await redis.xadd(stream, 'MAXLEN', '~', 10_000, '*', 'id', event.id, 'event', JSON.stringify(event)) as string
}

interface Cli {
  child: ChildProcess
  readonly stdout: string
  readonly stderr: string
  exit: Promise<number | null>
  /** Waits until stderr matches; fails the test when it does not within `ms`. */
  told: (pattern: RegExp, ms?: number) => Promise<void>
}

/** `node dist/cli.js …args`, left running; killed when the test ends if it is still alive. */
function start (t: Test, args: string[]): Cli {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, NODE_OPTIONS: undefined, REDIS_URL } })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
  child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
  const exit = new Promise<number | null>(resolve => child.once('exit', code => resolve(code)))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    await exit
  })
  return {
    child,
    exit,
    get stdout () { return stdout },
    get stderr () { return stderr },
    told: async (pattern, ms = 10_000) => {
      const waited = await within(ms, async () => pattern.test(stderr))
      if (waited === Infinity) throw new Error(`no ${pattern} on stderr within ${ms} ms; stderr:\n${stderr}`)
    }
  }
}

interface Received { key: string, body: string, headers: IncomingHttpHeaders }

/**
 * An HTTP receiver on a loopback port. `answer` decides each request's status; only 2xx answers
 * count as received. `down()` closes the port (connection refused), `up()` opens the same port again.
 */
class Receiver {
  readonly received: Received[] = []
  refusals = 0
  answer: (request: Received) => number = () => 200
  delayMs = 0
  port = 0
  private server: Server | undefined

  get url (): string { return `http://127.0.0.1:${this.port}/alerts` }
  keys (): string[] { return this.received.map(r => r.key) }

  async up (): Promise<void> {
    const server = createServer((req, res) => {
      let body = ''
      req.on('data', (chunk: Buffer) => { body += chunk.toString() })
      req.on('end', () => {
        const request = { key: String(req.headers['idempotency-key']), body, headers: req.headers }
        const status = this.answer(request)
        setTimeout(() => {
          if (status >= 200 && status < 300) this.received.push(request)
          else this.refusals++
          res.writeHead(status).end()
        }, this.delayMs)
      })
    })
    await new Promise<void>(resolve => server.listen(this.port, '127.0.0.1', resolve))
    this.port = (server.address() as AddressInfo).port
    this.server = server
  }

  async down (): Promise<void> {
    const server = this.server
    if (server === undefined) return
    this.server = undefined
    server.closeAllConnections()
    await new Promise(resolve => server.close(resolve))
  }
}

async function receiver (t: Test): Promise<Receiver> {
  const r = new Receiver()
  await r.up()
  t.teardown(async () => await r.down())
  return r
}

/** Entries the group handed out and nobody acknowledged. */
async function pendingCount (redis: Redis, stream: string, group = 'maestro-rl-forwarder'): Promise<number> {
  const [count] = await redis.xpending(stream, group) as [number]
  return count
}

function counts (keys: string[]): Map<string, number> {
  const seen = new Map<string, number>()
  for (const key of keys) seen.set(key, (seen.get(key) ?? 0) + 1)
  return seen
}

t.test('idempotency keys: the id as it is, or percent-encoded when a header cannot carry it; never two ids on one key', async t => {
  t.equal(idempotencyKey('2026-12:tenant:acme:-:0.8:1000'), '2026-12:tenant:acme:-:0.8:1000')
  t.equal(idempotencyKey('2026-12:tenant:café:-:1:10'), '2026-12:tenant:caf%C3%A9:-:1:10')
  t.equal(idempotencyKey('a b\nc'), 'a%20b%0Ac')
  t.equal(idempotencyKey('caf%C3%A9'), 'caf%25C3%25A9', 'an id that looks encoded is encoded again, so it cannot meet café')
})

t.test('tail prints each event as one JSON line: new ones by default, every kept one with --from-start', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const stream = `${prefix}:events`
  const old = [alert('acme'), alert('globex')]
  for (const event of old) await append(redis, stream, event)
  await redis.xadd(stream, '*', 'id', 'broken', 'event', '{not json')

  const fromNow = start(t, ['events', 'tail', '--prefix', prefix, '--count', '2'])
  const fromStart = start(t, ['events', 'tail', '--prefix', prefix, '--from-start', '--count', '3'])
  await fromNow.told(/tailing .*:events from now/)
  await fromStart.told(/tailing .*:events from its first entry/)
  const fresh = [alert('initech', 1), alert('umbrella', 0.5)]
  for (const event of fresh) await append(redis, stream, event)

  t.equal(await fromNow.exit, 0, fromNow.stderr)
  t.equal(await fromStart.exit, 0, fromStart.stderr)
  t.same(fromNow.stdout.trimEnd().split('\n').map(line => JSON.parse(line)), fresh, 'only what came after the start, in order')
  t.same(fromStart.stdout.trimEnd().split('\n').map(line => JSON.parse(line)), [...old, fresh[0]], 'from the first entry, then new ones, until --count')
  t.match(fromStart.stderr, /entry \d+-\d+ is not a quota alert \(the event field is not JSON\); skipped/)

  const forever = start(t, ['events', 'tail', '--prefix', prefix])
  await forever.told(/tailing/)
  await append(redis, stream, alert('hooli'))
  t.ok(await within(5000, async () => forever.stdout.includes('"tenantId":"hooli"')) < Infinity, 'prints as it comes')
  forever.child.kill('SIGTERM')
  t.equal(await forever.exit, 0, 'SIGTERM ends it cleanly')
  t.equal(forever.stdout.trimEnd().split('\n').length, 1)
})

t.test('forward: a receiver that refuses (503, then a closed port) gets every event after, in order, once per id', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const stream = `${prefix}:events`
  const events = ['a', 'b', 'c', 'd', 'e', 'café 6'].map(tenant => alert(tenant))
  // Stream order: a b c c' d e b' f — two duplicates before any delivery.
  const stored = [events[0], events[1], events[2], events[2], events[3], events[4], events[1], events[5]]
  for (const event of stored) await append(redis, stream, event)

  const http = await receiver(t)
  http.answer = () => 503
  const forwarder = start(t, ['events', 'forward', '--prefix', prefix, '--url', http.url, '--max-backoff', '40',
    '--header', 'authorization: Bearer s3cret', '--header', 'x-forwarder:one'])
  await forwarder.told(/forwarding .*:events \(group maestro-rl-forwarder, consumer [^)]+:\d+\) to http:\/\/127\.0\.0\.1/)
  await forwarder.told(/delivery of 2026-12:tenant:a:-:0\.8:1000 \(entry \d+-\d+\) failed: HTTP 503; attempt 3, next in \d+ ms/)
  await http.down()
  await forwarder.told(/failed: ECONNREFUSED; attempt \d+, next in \d+ ms/)
  t.equal(http.received.length, 0)
  await http.up()
  http.answer = () => 200

  t.ok(await within(10_000, async () => await pendingCount(redis, stream) === 0 && http.received.length >= 6) < Infinity, 'all delivered and acknowledged')
  await append(redis, stream, events[3]) // a copy of a delivered event, after the fact
  t.ok(await within(5000, async () => await pendingCount(redis, stream) === 0 &&
    (await redis.xinfo('GROUPS', stream) as any[][])[0].includes(await lastId(redis, stream))) < Infinity, 'the late copy is read and acknowledged')

  t.same(http.keys(), events.map(e => idempotencyKey(e.id)), 'each id once, in stream order')
  t.equal(http.keys()[5], '2026-12:tenant:caf%C3%A9%206:-:0.8:1000', 'an id a header cannot carry as it is goes percent-encoded')
  t.same(http.received.map(r => JSON.parse(r.body)), events, 'the body is the event JSON')
  for (const { headers } of http.received) {
    t.match(headers, { 'content-type': 'application/json', authorization: 'Bearer s3cret', 'x-forwarder': 'one' })
  }
  const ttl = await redis.ttl(`${stream}:delivered:maestro-rl-forwarder:${events[0].id}`)
  t.ok(ttl > 7 * 86_400 - 60 && ttl <= 7 * 86_400, 'delivered ids are remembered for 7 days')
  t.notMatch(forwarder.stderr, /delivered 2026/, 'no line per success without --verbose')

  t.equal(forwarder.child.exitCode, null, 'it keeps waiting for more')
  forwarder.child.kill('SIGTERM')
  t.equal(await forwarder.exit, 0, 'SIGTERM ends it cleanly')
  t.match(forwarder.stderr, /stopped: 6 delivered, 3 duplicates acknowledged, 0 entries skipped/)
})

async function lastId (redis: Redis, stream: string): Promise<string> {
  const [[id]] = await redis.xrevrange(stream, '+', '-', 'COUNT', 1)
  return id
}

t.test('forward: killed mid-way and restarted under its name, it re-delivers what it left pending', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const stream = `${prefix}:events`
  const events = Array.from({ length: 8 }, (_, i) => alert(`tenant-${i}`))
  for (const event of events) await append(redis, stream, event)

  const http = await receiver(t)
  http.answer = () => http.received.length < 3 ? 200 : 503 // three get through, then the receiver fails
  const args = ['events', 'forward', '--prefix', prefix, '--url', http.url, '--max-backoff', '30', '--consumer', 'worker-1', '--verbose']
  const first = start(t, args)
  await first.told(/delivery of 2026-12:tenant:tenant-3:-:0\.8:1000 .*attempt 2/)
  first.child.kill('SIGKILL')
  await first.exit
  t.same(http.keys(), events.slice(0, 3).map(e => e.id))
  t.equal(await pendingCount(redis, stream), 5, 'the rest of its batch is pending on it')

  http.answer = () => 200
  const second = start(t, args)
  await second.told(/re-delivering 5 entries left pending by consumer worker-1/)
  t.ok(await within(10_000, async () => await pendingCount(redis, stream) === 0) < Infinity, 'everything acknowledged')
  t.same(http.keys(), events.map(e => e.id), 'nothing lost, nothing twice, in order')
  t.match(second.stderr, /delivered 2026-12:tenant:tenant-3:-:0\.8:1000 \(entry \d+-\d+\): HTTP 200 in \d+ ms/, '--verbose: one line per delivery')
  second.child.kill('SIGINT')
  t.equal(await second.exit, 0, 'Ctrl-C ends it cleanly')
})

t.test('forward: two forwarders in one group share the work, deliver each id once, and take over from a crashed one', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const stream = `${prefix}:events`
  const http = await receiver(t)
  http.delayMs = 5
  const forwarder = (name: string): Cli => start(t, ['events', 'forward', '--prefix', prefix, '--url', http.url, '--max-backoff', '30',
    '--consumer', name, '--claim-idle', '300', '--header', `x-forwarder: ${name}`])
  const one = forwarder('one')
  const two = forwarder('two')
  await Promise.all([one.told(/forwarding/), two.told(/forwarding/)])

  // 40 events; every fifth appended again ten entries later, so the copies land in the other one's batch.
  const events = Array.from({ length: 40 }, (_, i) => alert(`shared-${i}`))
  for (let i = 0; i < events.length; i++) {
    await append(redis, stream, events[i])
    if (i >= 10 && i % 5 === 0) await append(redis, stream, events[i - 10])
  }
  t.ok(await within(15_000, async () => http.received.length >= 40 && await pendingCount(redis, stream) === 0) < Infinity, 'all delivered')
  const firstRound = counts(http.keys())
  t.equal(firstRound.size, 40)
  t.same([...firstRound.values()].filter(n => n !== 1), [], 'each id once')
  const by = counts(http.received.map(r => String(r.headers['x-forwarder'])))
  t.ok((by.get('one') ?? 0) > 0 && (by.get('two') ?? 0) > 0, `both took a share (${JSON.stringify([...by])})`)

  // Two copies appended back to back go one to each idle forwarder; the receiver is slow, so both
  // hold a copy at once: one posts, the other waits and acknowledges its copy.
  http.delayMs = 300
  const twin = alert('twin')
  await append(redis, stream, twin)
  await append(redis, stream, twin)
  t.ok(await within(10_000, async () => await pendingCount(redis, stream) === 0 && http.received.length >= 41) < Infinity, 'both copies acknowledged')
  t.equal(http.keys().filter(key => key === twin.id).length, 1, 'the twin posted once')
  http.delayMs = 5

  // The receiver now refuses forwarder one; one is killed while it holds entries. Two takes them over.
  http.answer = request => request.headers['x-forwarder'] === 'one' ? 503 : 200
  const more = Array.from({ length: 20 }, (_, i) => alert(`later-${i}`))
  for (const event of more) await append(redis, stream, event)
  await one.told(/delivery of 2026-12:tenant:later-\d+:.*failed: HTTP 503/)
  one.child.kill('SIGKILL')
  await one.exit
  t.ok(await within(15_000, async () => http.received.length >= 61 && await pendingCount(redis, stream) === 0) < Infinity, 'the crashed one\'s entries delivered by the other')
  const all = counts(http.keys())
  t.equal(all.size, 61)
  t.same([...all.values()].filter(n => n !== 1), [], 'still each id once')
  t.match(two.stderr, /claimed \d+ entries other consumers left pending for over 300 ms/)
  two.child.kill('SIGTERM')
  t.equal(await two.exit, 0)
})

t.test('options are checked before connecting (exit 2, naming the flag); an unreachable Redis is exit 1; help lists the commands', async t => {
  const globalFlags = new Set(['redis', 'prefix', 'env', 'help'])
  const refused: Array<[string[], Record<string, unknown>, RegExp]> = [
    [[], {}, /^events needs one of: tail, forward$/],
    [['follow'], {}, /^events needs one of: tail, forward \(not follow\)$/],
    [['tail', 'extra'], {}, /^events tail takes no arguments/],
    [['tail'], { url: 'http://x' }, /^events tail does not take --url$/],
    [['tail'], { tier: 'gold' }, /^events tail does not take --tier$/],
    [['tail'], { count: '0' }, /^--count must be a whole number from 1 to \d+ \(got "0"\)$/],
    [['tail'], { stream: '' }, /^--stream may not be empty$/],
    [['forward'], {}, /^events forward needs --url/],
    [['forward'], { url: 'http://x', count: '3' }, /^events forward does not take --count$/],
    [['forward'], { url: 'ftp://host/x' }, /^--url must be an http:\/\/ or https:\/\/ URL/],
    [['forward'], { url: 'not a url' }, /^--url must be an http:\/\/ or https:\/\/ URL/],
    [['forward'], { url: 'https://user:secret@hooks.example.com/' }, /^--url may not hold credentials; pass them as --header 'authorization: …'$/],
    [['forward'], { url: 'http://x', timeout: '1.5' }, /^--timeout must be a whole number from 1 to 2147483647/],
    [['forward'], { url: 'http://x', 'max-backoff': '-1' }, /^--max-backoff must be a whole number/],
    [['forward'], { url: 'http://x', 'claim-idle': '10' }, /^--claim-idle must be a whole number from 100/],
    [['forward'], { url: 'http://x', header: ['no colon'] }, /^--header must be "Name: value"/],
    [['forward'], { url: 'http://x', header: ['x-a: line\nbreak'] }, /^--header x-a: the value holds a character a header cannot carry$/],
    [['forward'], { url: 'http://x', header: ['Idempotency-Key: 1'] }, /^--header Idempotency-Key: set by the forwarder itself/],
    [['forward'], { url: 'http://x', group: '' }, /^--group may not be empty$/],
    [['forward'], { url: 'http://x', consumer: '' }, /^--consumer may not be empty$/]
  ]
  for (const [words, flags, message] of refused) {
    // Redis at a closed port: a check that let the command through would fail differently.
    await t.rejects(runEventsCommand(words, { redis: 'redis://127.0.0.1:1', ...flags }, globalFlags), message, `${words.join(' ')} ${JSON.stringify(flags)}`)
  }

  const [badCount, badFlag, unreachable, help] = await Promise.all([
    run(['events', 'tail', '--count', 'ten', '--redis', 'redis://127.0.0.1:1']),
    run(['show', 'acme', '--url', 'http://x']),
    run(['events', 'forward', '--url', 'http://127.0.0.1:9/', '--redis', 'redis://127.0.0.1:1']),
    run(['help'])
  ])
  t.equal(badCount.code, 2)
  t.match(badCount.stderr, /^maestro-rl: --count must be a whole number from 1 to \d+ \(got "ten"\) \(see maestro-rl help\)\n$/)
  t.equal(badFlag.code, 2)
  t.match(badFlag.stderr, /show does not take --url/)
  t.equal(unreachable.code, 1)
  t.match(unreachable.stderr, /^maestro-rl: cannot reach Redis at redis:\/\/127\.0\.0\.1:1\/?: connect ECONNREFUSED/)
  t.match(help.stdout, /events tail \[--from-start\] \[--stream KEY\] \[--count N\]/)
  t.match(help.stdout, /events forward --url URL \[--group G\] \[--consumer C\]/)
})

t.test('end to end: the plugin\'s own quota alerts reach a webhook through the forwarder, once each', async t => {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, {
    redis: sharedRedis(t),
    keyPrefix: prefix,
    tiers: { metered: { requestsPerMinute: 1000, requestsPerHour: null, concurrentRequests: null, monthlyQuota: 10 } },
    tenantExtractor: () => ({ tenantId: 'acme', tier: 'metered' })
  })
  app.get('/', async () => 'ok')
  await app.ready()
  const http = await receiver(t)
  http.answer = () => 200
  const forwarder = start(t, ['events', 'forward', '--prefix', prefix, '--url', http.url])
  await forwarder.told(/forwarding /)
  for (let i = 0; i < 12; i++) await app.inject({ url: '/' })
  t.ok(await within(10_000, async () => http.received.length >= 3) < Infinity, 'three alerts delivered')
  const delivered = http.received.map(r => JSON.parse(r.body) as QuotaAlertEvent)
  t.same(delivered.map(e => [e.tenantId, e.threshold, e.used, e.quota]), [['acme', 0.8, 8, 10], ['acme', 0.9, 9, 10], ['acme', 1, 10, 10]])
  t.same(http.keys(), delivered.map(e => idempotencyKey(e.id)))
  forwarder.child.kill('SIGTERM')
  t.equal(await forwarder.exit, 0)
})
