// The JSON calls of the console. The page lives at `<prefix>/ui/`, so the admin routes are at `../`;
// same-origin credentials (a session cookie, HTTP Basic) go along by default.

/** A call that did not succeed: the HTTP status (0: no answer), the server's message and field. */
export class ApiError extends Error {
  constructor (status, message, field) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.field = field
  }
}

const watchers = new Set()

/**
 * Calls `watch(state)` after every call: `{ kind: 'ok' }`, `{ kind: 'refused', status }` (401/403:
 * authorize said no), or `{ kind: 'trouble', message }` (no answer, or a 5xx).
 */
export function watchConnection (watch) {
  watchers.add(watch)
  return () => watchers.delete(watch)
}

function tell (state) {
  for (const watch of watchers) watch(state)
}

/** The path of a tenant's route: its id as one encoded segment. */
export function tenantPath (tenantId, rest = '') {
  return 'tenants/' + encodeURIComponent(tenantId) + rest
}

/**
 * One call. Resolves to the parsed JSON (null for 204); rejects with an ApiError carrying the
 * server's `message` and `field` for a refusal.
 */
export async function api (path, { method = 'GET', body } = {}) {
  const init = { method, credentials: 'same-origin', cache: 'no-store', headers: { accept: 'application/json' } }
  // A JSON content type only with a body: Fastify refuses an empty body that claims to be JSON.
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json'
    init.body = JSON.stringify(body)
  }
  let response
  try {
    response = await fetch('../' + path, init)
  } catch {
    tell({ kind: 'trouble', message: 'The server cannot be reached.' })
    throw new ApiError(0, 'The server cannot be reached.')
  }
  const payload = await readJson(response)
  const message = typeof payload?.message === 'string' ? payload.message : `HTTP ${response.status}`
  if (response.status === 401 || response.status === 403) {
    tell({ kind: 'refused', status: response.status })
    throw new ApiError(response.status, message)
  }
  if (response.status >= 500) {
    tell({ kind: 'trouble', message: `The server failed (HTTP ${response.status}): ${message}` })
    throw new ApiError(response.status, message)
  }
  tell({ kind: 'ok' })
  if (!response.ok) throw new ApiError(response.status, message, typeof payload?.field === 'string' ? payload.field : undefined)
  return payload
}

async function readJson (response) {
  if (response.status === 204) return null
  try {
    return await response.json()
  } catch {
    return null
  }
}
