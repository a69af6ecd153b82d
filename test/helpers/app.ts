// Real Fastify instances with the plugin on either store.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import rateLimiting, { type RateLimitingOptions } from '../../dist/index.js'
import { sharedRedis, uniquePrefix } from './redis.js'
import type { StoreKind } from './stores.js'

interface Teardown { teardown (fn: () => unknown): void }

export interface AppOptions {
  kind: StoreKind
  options?: RateLimitingOptions
  server?: FastifyServerOptions
  /** Shares one key prefix between apps (two instances, one Redis). */
  keyPrefix?: string
}

/** Builds an app with the plugin and a few routes; closed when the test ends. */
export async function buildApp (t: Teardown, { kind, options = {}, server = {}, keyPrefix }: AppOptions, routes?: (app: FastifyInstance) => void): Promise<FastifyInstance> {
  const app = Fastify(server)
  t.teardown(() => app.close())
  const redis = kind === 'redis' ? sharedRedis(t) : undefined
  await app.register(rateLimiting, { keyPrefix: keyPrefix ?? uniquePrefix(t, redis), ...(redis !== undefined ? { redis } : {}), ...options })
  if (routes !== undefined) routes(app)
  else app.get('/', async () => ({ ok: true }))
  await app.ready()
  return app
}

/** Listens on a free loopback port (closed with the app); returns the port. */
export async function listen (app: FastifyInstance): Promise<number> {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  return typeof address === 'object' && address !== null ? address.port : 0
}

/** The tenant named by the test's `x-tenant` / `x-tier` headers (a trusted test extractor). */
export const headerTenant: RateLimitingOptions['tenantExtractor'] = (request) => {
  const tenantId = request.headers['x-tenant']
  if (typeof tenantId !== 'string') return null
  const tier = request.headers['x-tier']
  return { tenantId, tier: typeof tier === 'string' ? tier : undefined }
}
