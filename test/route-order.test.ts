// Routes added before the plugin are not limited by it (its onRoute hook never sees them): they are
// named in one warning at registration, bounded, and only those under the plugin's prefix.
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import rateLimiting from '../dist/index.js'
import { routesIn } from '../dist/route-order.js'

interface Logged { level: number, msg: string, routes?: string[] }

function loggedApp (t: Test): { app: FastifyInstance, warnings: () => Logged[] } {
  const lines: Logged[] = []
  const app = Fastify({ logger: { level: 'warn', stream: { write: (line: string) => { lines.push(JSON.parse(line) as Logged) } } } })
  t.teardown(() => app.close())
  return { app, warnings: () => lines.filter(line => line.msg.includes('added before the plugin')) }
}

const ok = async (): Promise<string> => 'ok'

t.test('routes added before the plugin: warned about by name, and indeed not limited', async t => {
  const { app, warnings } = loggedApp(t)
  app.get('/early', ok)
  app.post('/users/:id', ok)
  await app.register(async child => { child.get('/v1/items/:id', ok) })
  app.register(rateLimiting, { store: 'memory' })
  app.get('/unawaited', ok) // declared before the plugin has loaded: not limited either
  await app.after()
  app.get('/late', ok)
  await app.ready()

  t.equal(warnings().length, 1, 'one warning')
  t.equal(warnings()[0]?.level, 40, 'at warn')
  t.same(warnings()[0]?.routes, ['GET,HEAD /early', 'POST /users/:id', 'GET,HEAD /unawaited', 'GET,HEAD /v1/items/:id'])
  t.match(warnings()[0]?.msg, /4 route\(s\).*Register the plugin \(with await\) before the routes/)
  for (const url of ['/early', '/unawaited']) t.equal((await app.inject(url)).headers['x-ratelimit-limit-minute'], undefined, `${url} is unlimited`)
  t.equal((await app.inject('/late')).headers['x-ratelimit-limit-minute'], '5', 'a route added after it is limited')
})

t.test('the plugin registered first: no warning', async t => {
  const { app, warnings } = loggedApp(t)
  await app.register(rateLimiting, { store: 'memory' })
  app.get('/', ok)
  app.get('/health', { config: { rateLimit: false } }, ok)
  await app.ready()
  t.same(warnings(), [])
})

t.test('many earlier routes: the warning names ten and counts the rest', async t => {
  const { app, warnings } = loggedApp(t)
  for (let i = 0; i < 25; i++) app.get(`/r${String(i).padStart(2, '0')}`, ok)
  await app.register(rateLimiting, { store: 'memory' })
  await app.ready()
  const routes = warnings()[0]?.routes ?? []
  t.equal(routes.length, 11)
  t.equal(routes[10], '… and 15 more')
  t.match(warnings()[0]?.msg, /^rate limiting: 25 route/)
})

t.test('the plugin inside a prefixed context: only earlier routes under its prefix are named', async t => {
  const { app, warnings } = loggedApp(t)
  app.get('/health', ok)
  await app.register(async api => {
    api.get('/status', ok)
    await api.register(rateLimiting, { store: 'memory' })
    api.get('/orders', ok)
  }, { prefix: '/api' })
  await app.ready()
  t.same(warnings()[0]?.routes, ['GET,HEAD /api/status'])
})

t.test('routesIn reads the tree printRoutes draws: nesting, a root route, constraints, wildcards', async t => {
  const app = Fastify()
  t.teardown(() => app.close())
  app.get('/', ok)
  app.get('/health', ok)
  app.post('/users/:id', ok)
  app.get('/users/:id/orders', ok)
  app.get('/v1/items', { constraints: { version: '1.0.0' } }, ok)
  app.get('/v1/items', { constraints: { version: '2.0.0' } }, ok)
  app.delete('/files/*', ok)
  app.get('/files/a', ok)
  app.get('/fi', ok)
  await app.ready()
  const found = routesIn(app.printRoutes()).map(route => `${route.methods} ${route.path}`).sort()
  t.same(found, [
    'DELETE /files/*', 'GET,HEAD /', 'GET,HEAD /fi', 'GET,HEAD /files/a', 'GET,HEAD /health', 'GET,HEAD /users/:id/orders', 'GET,HEAD /v1/items', 'POST /users/:id'
  ])
  t.same(routesIn(Fastify().printRoutes()), [], 'an empty router names nothing')
})
