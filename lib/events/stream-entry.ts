// The reading side of the quota-alert stream: entries appended by the plugin as
// `XADD <key> MAXLEN ~ <n> * id <event id> event <event JSON>`. This file alone knows that shape.

/** The stream a prefix's services append their quota alerts to, unless configured otherwise. */
export function defaultStreamKey (keyPrefix: string): string {
  return `${keyPrefix}:events`
}

/** A raw entry as XREAD, XREADGROUP and XAUTOCLAIM return it; fields are null when it was trimmed away. */
export type RawEntry = [entryId: string, fields: string[] | null]

export type StreamEntry =
  | { kind: 'event', entryId: string, eventId: string, /** the event JSON as stored */ json: string }
  | { kind: 'malformed', entryId: string, reason: string }
  | { kind: 'gone', entryId: string }

/** An entry read from the stream, checked against the stored format. */
export function readEntry ([entryId, fields]: RawEntry): StreamEntry {
  if (fields === null) return { kind: 'gone', entryId }
  const values = new Map<string, string>()
  for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i], fields[i + 1])
  const eventId = values.get('id')
  const json = values.get('event')
  if (eventId === undefined || eventId === '') return { kind: 'malformed', entryId, reason: 'no id field' }
  if (json === undefined) return { kind: 'malformed', entryId, reason: 'no event field' }
  let event: unknown
  try {
    event = JSON.parse(json)
  } catch {
    return { kind: 'malformed', entryId, reason: 'the event field is not JSON' }
  }
  if (event === null || typeof event !== 'object' || Array.isArray(event)) return { kind: 'malformed', entryId, reason: 'the event field is not a JSON object' }
  return { kind: 'event', entryId, eventId, json }
}

/** The entries of the one stream a reply of XREAD or XREADGROUP (one key) holds; none when it timed out. */
export function entriesOf (reply: unknown): RawEntry[] {
  if (!Array.isArray(reply) || reply.length === 0) return []
  return (reply[0] as [string, RawEntry[]])[1]
}
