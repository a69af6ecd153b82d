// Anonymous clients are keyed by request.ip. With `trustProxy: true` Fastify takes it from the
// leftmost X-Forwarded-For entry whoever sent the request, so every client can name its own key and
// start afresh with each request: the anonymous limits then hold nobody.
import type { FastifyInstance } from 'fastify'

/** Warns once, at registration, when the default anonymous key is the client's to choose. */
export function warnIfClientsPickTheirKey (fastify: FastifyInstance, customAnonymousKey: boolean): void {
  if (customAnonymousKey || trustProxyOf(fastify) !== true) return
  fastify.log.warn({ trustProxy: true },
    'rate limiting: trustProxy is true, so any client chooses its own anonymous key by sending X-Forwarded-For ' +
    'and escapes the anonymous limits; set trustProxy to the addresses of your proxies (e.g. \'10.0.0.0/8\') ' +
    'or give an anonymousKey')
}

/**
 * The server's `trustProxy` option. `fastify.initialConfig` leaves it out, so it is read where Fastify
 * keeps its options: the `fastify.options` symbol of the root instance, which every plugin's
 * instance inherits.
 */
function trustProxyOf (fastify: FastifyInstance): unknown {
  for (let instance: object | null = fastify; instance !== null; instance = Object.getPrototypeOf(instance)) {
    const key = Object.getOwnPropertySymbols(instance).find(symbol => symbol.description === 'fastify.options')
    if (key !== undefined) return (instance as Record<symbol, { trustProxy?: unknown } | undefined>)[key]?.trustProxy
  }
  return undefined
}
