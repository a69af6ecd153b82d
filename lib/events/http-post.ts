// One delivery attempt of one event to the receiver: a JSON POST that counts only when answered 2xx.

export interface Receiver {
  url: URL
  /** Extra headers (authorization…); never content-type nor idempotency-key, which are ours. */
  headers: Record<string, string>
  /** The whole attempt, answer included. */
  timeoutMs: number
}

export type Attempt = { delivered: true, status: number } | { delivered: false, reason: string }

/** Headers the forwarder sets itself (or fetch does); `--header` may not replace them. */
export const RESERVED_HEADERS = new Set(['content-type', 'idempotency-key', 'content-length', 'host', 'transfer-encoding', 'connection'])

/**
 * The event id as a header value: as it is when it holds only visible ASCII and no `%`; otherwise
 * percent-encoded (UTF-8). Header values cannot carry other characters, and keeping `%` for escapes
 * only means no two ids share a key.
 */
export function idempotencyKey (eventId: string): string {
  if (/^[\x21-\x24\x26-\x7e]+$/.test(eventId)) return eventId
  let key = ''
  for (const byte of Buffer.from(eventId, 'utf8')) {
    key += byte > 0x20 && byte < 0x7f && byte !== 0x25 ? String.fromCharCode(byte) : '%' + byte.toString(16).toUpperCase().padStart(2, '0')
  }
  return key
}

/** Posts the event JSON as stored. Redirects are not followed: the URL given is the one trusted with the events. */
export async function postEvent (receiver: Receiver, eventId: string, json: string): Promise<Attempt> {
  let response: Response
  try {
    response = await fetch(receiver.url, {
      method: 'POST',
      headers: { ...receiver.headers, 'content-type': 'application/json', 'idempotency-key': idempotencyKey(eventId) },
      body: json,
      redirect: 'manual',
      signal: AbortSignal.timeout(receiver.timeoutMs)
    })
  } catch (err) {
    return { delivered: false, reason: failureOf(err, receiver.timeoutMs) }
  }
  await response.body?.cancel().catch(() => {}) // the answer's body says nothing we act on
  if (response.status >= 200 && response.status < 300) return { delivered: true, status: response.status }
  const location = response.headers.get('location')
  const redirect = response.status >= 300 && response.status < 400 && location !== null ? ` (redirect to ${location}, not followed)` : ''
  return { delivered: false, reason: `HTTP ${response.status}${redirect}` }
}

/** What went wrong, in a few words: the socket's error rather than fetch's "fetch failed". */
function failureOf (err: unknown, timeoutMs: number): string {
  const error = err as Error & { cause?: Error & { code?: string } }
  if (error.name === 'TimeoutError') return `no answer within ${timeoutMs} ms`
  const cause = error.cause
  if (cause !== undefined) return cause.code ?? cause.message
  return error.message
}
