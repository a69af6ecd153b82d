// Organizations and shared route budgets through Fastify: the memory store on one instance, Redis
// with two instances on one prefix.
import t from 'tap'
import Fastify from 'fastify'
import rateLimiting from '../dist/index.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'
import { levelsHttpSuite, type MakeInstances } from './helpers/levels-http.js'

const memory: MakeInstances = async (t, _count, options, routes) => {
  const app = Fastify()
  t.teardown(() => app.close())
  const prefix = uniquePrefix(t)
  await app.register(rateLimiting, { ...options, store: 'memory', keyPrefix: prefix })
  routes(app)
  await app.ready()
  return { apps: [app], prefix }
}

const redis: MakeInstances = async (t, count, options, routes) => {
  const client = sharedRedis(t)
  const prefix = uniquePrefix(t, client)
  const apps = []
  for (let i = 0; i < count; i++) {
    const app = Fastify()
    t.teardown(() => app.close())
    await app.register(rateLimiting, { ...options, redis: sharedRedis(t), keyPrefix: prefix })
    routes(app)
    await app.ready()
    apps.push(app)
  }
  return { apps, prefix }
}

t.test('memory store, one instance', async t => { levelsHttpSuite(t, memory, 1) })
t.test('Redis, two instances', async t => { levelsHttpSuite(t, redis, 2) })
