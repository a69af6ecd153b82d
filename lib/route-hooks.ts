// Wiring one route: its limiter hook, and the hooks that give its concurrency lease back.
import type { FastifyRequest, RouteOptions } from 'fastify'
import type { Limiter } from './limiter.js'
import { resolveRouteConfig } from './route-config.js'

/** Called from onRoute: resolves `config.rateLimit` (boot fails on a bad one) and adds the hooks. */
export function attachToRoute (route: RouteOptions, hook: string, global: boolean, limiter: Limiter): void {
  const name = `${Array.isArray(route.method) ? route.method.join(',') : route.method} ${route.url}`
  const limited = resolveRouteConfig(name, route.config?.rateLimit, global)
  if (limited === undefined) return
  const release = (request: FastifyRequest): void => limiter.release(request)
  appendHook(route, hook, limiter.hookFor(limited, route.url))
  // A lease is given back exactly once: on the response, a client abort, or a timeout.
  appendHook(route, 'onResponse', (request: FastifyRequest, _reply: unknown, done: () => void) => { release(request); done() })
  appendHook(route, 'onRequestAbort', (request: FastifyRequest, done: () => void) => { release(request); done() })
  appendHook(route, 'onTimeout', (request: FastifyRequest, _reply: unknown, done: () => void) => { release(request); done() })
}

function appendHook (route: RouteOptions, name: string, hook: unknown): void {
  const slot = route as unknown as Record<string, unknown>
  const existing = slot[name]
  slot[name] = existing === undefined ? [hook] : Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}
