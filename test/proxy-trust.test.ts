// Anonymous keys behind proxies: a forwarded value that is no address never becomes a key, and a
// server that lets every client choose its key (trustProxy: true) is warned about at boot.
import Fastify, { type FastifyServerOptions } from 'fastify'
import t, { type Test } from 'tap'
import rateLimiting, { type RateLimitingOptions } from '../dist/index.js'
import { buildApp } from './helpers/app.js'

const PEER = '10.0.0.1'

t.test('trustProxy: true, forwarded values that are not addresses: keyed by the peer, held to the limit', async t => {
  const app = await buildApp(t, { kind: 'memory', server: { trustProxy: true } }, app => {
    app.get('/', async request => ({ subject: request.rateLimit?.subject }))
  })
  // Fastify takes the leftmost entry as request.ip; none of these is an address.
  const forged = ['evil', 'foo, 1.2.3.4', '1.2.3.4:80', '[::1]', 'unknown', '_hidden', '999.1.1.1', '1.2.3', 'a b', '::g']
  const values = [...forged, ...forged.map(value => `${value}-2`)]
  let admitted = 0
  for (const xff of values) {
    const res = await app.inject({ url: '/', headers: { 'x-forwarded-for': xff }, remoteAddress: PEER })
    if (res.statusCode === 200) {
      admitted++
      t.equal(res.json().subject, PEER, `${JSON.stringify(xff)} is keyed by the peer's address`)
    }
  }
  t.equal(values.length, 20)
  t.equal(admitted, 5, 'the anonymous limit (5 a minute) holds, whatever the header says')
})

t.test('trustProxy naming the proxy: each forwarded client is keyed by its own address', async t => {
  const app = await buildApp(t, { kind: 'memory', server: { trustProxy: PEER } }, app => {
    app.get('/', async request => ({ subject: request.rateLimit?.subject }))
  })
  const viaProxy = async (xff: string): Promise<{ statusCode: number, subject: string }> => {
    const res = await app.inject({ url: '/', headers: { 'x-forwarded-for': xff }, remoteAddress: PEER })
    return { statusCode: res.statusCode, subject: res.json().subject }
  }
  for (let i = 0; i < 5; i++) t.match(await viaProxy('203.0.113.9'), { statusCode: 200, subject: '203.0.113.9' })
  t.equal((await viaProxy('203.0.113.9')).statusCode, 429, 'one client is held to its limit')
  t.match(await viaProxy('198.51.100.7, 203.0.113.10'), { statusCode: 200, subject: '203.0.113.10' }, 'the proxy appends the real client; what the client wrote is ignored')
  t.match(await viaProxy('2001:db8:1:2::7'), { statusCode: 200, subject: '2001:db8:1:2:0:0:0:0/64' }, 'IPv6 by network, as before')
  t.match(await viaProxy('evil'), { statusCode: 200, subject: PEER }, 'a proxy passing garbage: the proxy is the key')
  const direct = await app.inject({ url: '/', headers: { 'x-forwarded-for': '192.0.2.1' }, remoteAddress: '203.0.113.50' })
  t.equal(direct.json().subject, '203.0.113.50', 'a client that skips the proxy cannot forward anything')
})

/** The warnings the plugin logs while booting on a server with these options. */
async function bootWarnings (t: Test, server: FastifyServerOptions, options: RateLimitingOptions = {}): Promise<string[]> {
  const lines: string[] = []
  const app = Fastify({ ...server, logger: { level: 'warn', stream: { write: (line: string) => { lines.push(line) } } } })
  t.teardown(() => app.close())
  await app.register(rateLimiting, options)
  await app.ready()
  return lines.map(line => JSON.parse(line)).filter(entry => entry.level === 40).map(entry => entry.msg as string)
}

t.test('boot warns once when trustProxy: true meets the default anonymous key', async t => {
  const warned = await bootWarnings(t, { trustProxy: true })
  const about = warned.filter(message => message.includes('trustProxy'))
  t.equal(about.length, 1, 'one warning')
  t.match(about[0], /any client chooses its own anonymous key/)
  t.match(about[0], /addresses of your proxies/)

  const encapsulated = Fastify({ trustProxy: true, logger: { level: 'warn', stream: { write: (line: string) => { if (line.includes('trustProxy')) about.push(line) } } } })
  t.teardown(() => encapsulated.close())
  await encapsulated.register(async child => { await child.register(rateLimiting) })
  await encapsulated.ready()
  t.equal(about.length, 2, 'also when registered inside an encapsulated plugin')

  const quiet: Array<[string, FastifyServerOptions, RateLimitingOptions?]> = [
    ['no trustProxy', {}],
    ['trustProxy naming the proxy', { trustProxy: PEER }],
    ['trustProxy as a list of proxies', { trustProxy: ['10.0.0.0/8'] }],
    ['a hop count (which Fastify now treats as trusting no proxy)', { trustProxy: 1 as unknown as string }],
    ['a custom anonymousKey', { trustProxy: true }, { anonymousKey: request => request.socket.remoteAddress ?? '' }]
  ]
  for (const [name, server, options] of quiet) {
    t.same((await bootWarnings(t, server, options)).filter(message => message.includes('trustProxy')), [], `no warning: ${name}`)
  }
})
