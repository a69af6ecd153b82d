// Wiring one route: its limiter hook (leases go back through instance-wide hooks, lib/lease-hooks.ts).
import type { RouteOptions } from 'fastify'
import type { Limiter } from './limiter.js'
import { resolveRouteConfig } from './route-config.js'

/** Called from onRoute: resolves `config.rateLimit` (boot fails on a bad one) and adds the hook. */
export function attachToRoute (route: RouteOptions, hook: string, global: boolean, limiter: Limiter): void {
  const methods = Array.isArray(route.method) ? route.method : [route.method]
  // HEAD is GET without a body: Fastify's automatic HEAD route counts in its GET route's counters.
  const countersName = `${[...new Set(methods.map(m => m === 'HEAD' ? 'GET' : m))].join(',')} ${route.url}`
  const routeName = `${methods.join(',')} ${route.url}`
  const limited = resolveRouteConfig(routeName, route.config?.rateLimit, global, countersName)
  if (limited === undefined) return
  if (limited.shared !== undefined) limiter.registerBudget(limited.shared, routeName)
  appendHook(route, hook, limiter.hookFor(limited, route.url))
}

function appendHook (route: RouteOptions, name: string, hook: unknown): void {
  const slot = route as unknown as Record<string, unknown>
  const existing = slot[name]
  slot[name] = existing === undefined ? [hook] : Array.isArray(existing) ? [...existing, hook] : [existing, hook]
}
