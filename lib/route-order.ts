// The plugin limits routes through its onRoute hook, which never sees a route added before the plugin
// was registered: such a route is silently unlimited. Fastify offers no list of routes, only
// printRoutes(); its tree is read here to name them (a format it cannot read names nothing).
import type { FastifyInstance } from 'fastify'

const SHOWN = 10
// indentation, connector, path segment, then "(GET, HEAD)" when a route ends here, then constraints.
const CONNECTOR = /^((?:[│ ] {3})*)[├└]── (.*?)(?: \(([A-Z][A-Z, ]*)\))?(?: \{.*\})?$/

/** Warns once, at registration, naming the routes under the plugin's prefix that are already there. */
export function warnAboutEarlierRoutes (fastify: FastifyInstance): void {
  const earlier = routesIn(fastify.printRoutes()).filter(route => route.path.startsWith(fastify.prefix))
  if (earlier.length === 0) return
  const shown = earlier.slice(0, SHOWN).map(route => `${route.methods} ${route.path}`)
  if (earlier.length > SHOWN) shown.push(`… and ${earlier.length - SHOWN} more`)
  fastify.log.warn({ routes: shown },
    'rate limiting: %d route(s) were added before the plugin was registered and are not limited: %s. ' +
    'Register the plugin (with await) before the routes it should limit; give a route `config: { rateLimit: false }` to leave it unlimited on purpose',
    earlier.length, shown.join('; '))
}

interface KnownRoute { readonly path: string, readonly methods: string }

/**
 * Full paths and methods from the text tree of printRoutes: each level indents by four characters and
 * adds its segment to its parent's path. The default (common prefixes as nodes of their own) is read:
 * with `commonPrefix: false` a wildcard is drawn without the static part before it.
 */
export function routesIn (tree: string): KnownRoute[] {
  const routes: KnownRoute[] = []
  const stack: string[] = []
  for (const line of tree.split('\n')) {
    const match = CONNECTOR.exec(line)
    if (match === null) continue
    const depth = (match[1] ?? '').length / 4
    const path = (stack[depth - 1] ?? '') + (match[2] ?? '')
    stack[depth] = path
    stack.length = depth + 1
    if (match[3] === undefined) continue
    const methods = match[3].replaceAll(' ', '')
    if (!routes.some(known => known.path === path && known.methods === methods)) routes.push({ path, methods })
  }
  return routes
}
