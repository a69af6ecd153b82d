// The console's page and assets (lib/console/assets, copied to dist/console/assets by the build),
// read once at registration and served under `<prefix>/ui/` behind the admin plugin's authorize
// hook like every admin route. The headers keep the page to its own origin: its own scripts and
// styles only, no framing (no clickjacking of an operator's session), nothing cached or referred.
import { readdirSync, readFileSync } from 'node:fs'
import { extname } from 'node:path'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'

const ASSETS = new URL('./assets/', import.meta.url)

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon'
}

const HEADERS = {
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store'
}

interface Asset { readonly body: Buffer, readonly type: string }

/** Every file of the assets folder with a known type, by name. */
function readAssets (): Map<string, Asset> {
  const assets = new Map<string, Asset>()
  for (const name of readdirSync(ASSETS)) {
    const type = TYPES[extname(name)]
    if (type !== undefined) assets.set(name, { body: readFileSync(new URL(name, ASSETS)), type })
  }
  return assets
}

export function addConsolePage (admin: FastifyInstance, config: object): void {
  const assets = readAssets()
  const send = (reply: FastifyReply, asset: Asset): FastifyReply => reply.headers(HEADERS).type(asset.type).send(asset.body)
  const notFound = (reply: FastifyReply, name: string): FastifyReply =>
    reply.code(404).headers(HEADERS).send({ statusCode: 404, error: 'Not Found', message: `the console has no file ${name}` })

  // `<prefix>/ui` sends the browser to `<prefix>/ui/`, so the page's relative URLs (./console.js,
  // ../tenants) resolve under the prefix whatever it is.
  const index = async (request: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const path = request.url.split('?')[0]
    if (!path.endsWith('/')) return await reply.redirect(path.slice(path.lastIndexOf('/') + 1) + '/')
    const page = assets.get('index.html')
    return page === undefined ? notFound(reply, 'index.html') : send(reply, page)
  }
  admin.get('/ui', { config }, index)
  // A router that ignores trailing slashes has taken both paths already.
  if (!ignoresTrailingSlash(admin)) admin.get('/ui/', { config }, index)
  admin.get<{ Params: { file: string } }>('/ui/:file', { config }, async (request, reply) => {
    const asset = assets.get(request.params.file)
    return asset === undefined ? notFound(reply, request.params.file) : send(reply, asset)
  })
}

function ignoresTrailingSlash (fastify: FastifyInstance): boolean {
  const config = fastify.initialConfig as { ignoreTrailingSlash?: boolean, routerOptions?: { ignoreTrailingSlash?: boolean } }
  return config.routerOptions?.ignoreTrailingSlash === true || config.ignoreTrailingSlash === true
}
