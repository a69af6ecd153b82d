// A store of one's own (`store` option) that offers only the promise API of RateLimitStore: it
// limits like the built-in ones, and one that throws or answers without a promise is handled.
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import rateLimiting, { MemoryStore, type AdmitRequest, type Decision, type RateLimitStore } from '../dist/index.js'

/** Only the interface's methods, by delegation: no admitTo, so the limiter takes the promise path. */
function promiseOnly (inner: MemoryStore, admit?: (request: AdmitRequest) => Promise<Decision>): RateLimitStore {
  return {
    kind: 'memory',
    admit: admit ?? (async request => await inner.admit(request)),
    release: (keys, id) => inner.release(keys, id),
    renewLeases: async leases => await inner.renewLeases(leases),
    usage: async keys => await inner.usage(keys),
    resetSubject: async base => await inner.resetSubject(base),
    close: async () => await inner.close()
  }
}

async function appWith (t: Test, store: RateLimitStore, failMode: 'open' | 'closed' = 'open'): Promise<ReturnType<typeof Fastify>> {
  const app = Fastify()
  t.teardown(() => app.close())
  await app.register(rateLimiting, { store, failMode })
  app.get('/', async () => 'ok')
  await app.ready()
  return app
}

t.test('a store with only admit() limits like the built-in ones and gets its leases back', async t => {
  const inner = new MemoryStore()
  t.teardown(() => inner.close())
  const app = await appWith(t, promiseOnly(inner))
  const statuses: number[] = []
  for (let i = 0; i < 6; i++) statuses.push((await app.inject({ url: '/' })).statusCode)
  t.same(statuses, [200, 200, 200, 200, 200, 429])
  const usage = await inner.usage((await import('../dist/keys.js')).storeKeys('maestro-rl', 'anonymous', '127.0.0.1', undefined))
  t.equal(usage.minute, 5)
  t.equal(usage.inFlight, 0, 'every lease was given back')
})

t.test('a store whose admit() answers without a promise still works', async t => {
  const inner = new MemoryStore()
  t.teardown(() => inner.close())
  const plain = (request: AdmitRequest): Promise<Decision> => {
    let decision: Decision | undefined
    inner.admitTo(request, { decided: d => { decision = d }, failed: err => { throw err } })
    return decision as unknown as Promise<Decision> // a plain value, as a loosely typed store might return
  }
  const app = await appWith(t, promiseOnly(inner, plain))
  const res = await app.inject({ url: '/' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['x-ratelimit-remaining-minute'], '4')
})

t.test('a store whose admit() throws is a store failure: failMode decides', async t => {
  const inner = new MemoryStore()
  t.teardown(() => inner.close())
  const throwing = (): Promise<Decision> => { throw new Error('store broke') }
  const open = await appWith(t, promiseOnly(inner, throwing), 'open')
  const admitted = await open.inject({ url: '/' })
  t.equal(admitted.statusCode, 200)
  t.equal(admitted.headers['x-ratelimit-status'], 'degraded')
  const closed = await appWith(t, promiseOnly(inner, throwing), 'closed')
  const refused = await closed.inject({ url: '/' })
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().code, 'FST_MAESTRO_RL_STORE_UNAVAILABLE')
})
