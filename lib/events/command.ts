// `maestro-rl events tail|forward`: options checked (exit 2 naming the flag), then a connection of its
// own, kept until the stream is done with or a signal stops the command (exit 0).
import { hostname } from 'node:os'
import { connect, redisTarget, UsageError } from '../cli-connection.js'
import { resolveOptions } from '../options.js'
import { forwardEvents } from './forwarder.js'
import { RESERVED_HEADERS, type Receiver } from './http-post.js'
import { defaultStreamKey } from './stream-entry.js'
import { stopOnSignals } from './stopping.js'
import { tailEvents } from './tail.js'

export const EVENT_OPTIONS = {
  'from-start': { type: 'boolean' },
  stream: { type: 'string' },
  count: { type: 'string' },
  url: { type: 'string' },
  group: { type: 'string' },
  consumer: { type: 'string' },
  timeout: { type: 'string' },
  'max-backoff': { type: 'string' },
  'claim-idle': { type: 'string' },
  header: { type: 'string', multiple: true },
  verbose: { type: 'boolean' }
} as const

type EventFlag = keyof typeof EVENT_OPTIONS
export type EventFlags = { [F in EventFlag]?: (typeof EVENT_OPTIONS)[F] extends { multiple: true } ? string[] : (typeof EVENT_OPTIONS)[F]['type'] extends 'boolean' ? boolean : string }

const FLAGS: Record<string, EventFlag[]> = {
  tail: ['from-start', 'stream', 'count'],
  forward: ['url', 'group', 'consumer', 'stream', 'timeout', 'max-backoff', 'claim-idle', 'header', 'verbose']
}

export const DEFAULT_GROUP = 'maestro-rl-forwarder'
export const DEFAULT_TIMEOUT_MS = 10_000
export const DEFAULT_MAX_BACKOFF_MS = 60_000
export const DEFAULT_CLAIM_IDLE_MS = 60_000
/** The longest timer Node keeps. */
const MAX_MS = 2 ** 31 - 1

export interface Connection { redis?: string, prefix?: string }

/** Runs `events <verb>` (the words after `events`); returns the exit status. */
export async function runEventsCommand (words: string[], flags: Connection & EventFlags & Record<string, unknown>, globalFlags: Set<string>): Promise<number> {
  const verb = words[0]
  if (verb === undefined || FLAGS[verb] === undefined) {
    throw new UsageError(`events needs one of: ${Object.keys(FLAGS).join(', ')}${verb === undefined ? '' : ` (not ${verb})`}`)
  }
  if (words.length > 1) throw new UsageError(`events ${verb} takes no arguments (got ${words[1]})`)
  for (const [flag, value] of Object.entries(flags)) {
    if (value !== undefined && !globalFlags.has(flag) && !FLAGS[verb].includes(flag as EventFlag)) throw new UsageError(`events ${verb} does not take --${flag}`)
  }
  const { keyPrefix } = resolveOptions({ keyPrefix: flags.prefix }) // a bad prefix is refused before connecting
  const stream = nonEmpty('stream', flags.stream) ?? defaultStreamKey(keyPrefix)
  const run = verb === 'tail' ? tailWith(stream, flags) : forwardWith(stream, flags)

  const { url, source } = redisTarget(flags.redis)
  const stopping = stopOnSignals()
  const redis = await connect(url, source).catch(err => { stopping.dispose(); throw err })
  try {
    await run(redis, stopping)
    return 0
  } finally {
    stopping.dispose()
    await redis.quit().catch(() => redis.disconnect())
  }
}

type Run = (redis: Awaited<ReturnType<typeof connect>>, stopping: ReturnType<typeof stopOnSignals>) => Promise<unknown>

function tailWith (stream: string, flags: EventFlags): Run {
  const count = flags.count === undefined ? undefined : wholeNumber('count', flags.count, 1, Number.MAX_SAFE_INTEGER)
  return async (redis, { signal, stop }) => {
    process.stdout.on('error', stop) // the reader went away (a closed pipe): nothing left to do
    await tailEvents(redis, {
      stream,
      fromStart: flags['from-start'] === true,
      ...(count === undefined ? {} : { count }),
      signal,
      print: line => { process.stdout.write(line + '\n') },
      log
    })
  }
}

function forwardWith (stream: string, flags: EventFlags): Run {
  const receiver: Receiver = {
    url: receiverUrl(flags.url),
    headers: headersFrom(flags.header ?? []),
    timeoutMs: flags.timeout === undefined ? DEFAULT_TIMEOUT_MS : wholeNumber('timeout', flags.timeout, 1, MAX_MS)
  }
  const options = {
    stream,
    group: nonEmpty('group', flags.group) ?? DEFAULT_GROUP,
    consumer: nonEmpty('consumer', flags.consumer) ?? `${hostname()}:${process.pid}`,
    receiver,
    maxBackoffMs: flags['max-backoff'] === undefined ? DEFAULT_MAX_BACKOFF_MS : wholeNumber('max-backoff', flags['max-backoff'], 1, MAX_MS),
    claimIdleMs: flags['claim-idle'] === undefined ? DEFAULT_CLAIM_IDLE_MS : wholeNumber('claim-idle', flags['claim-idle'], 100, MAX_MS),
    verbose: flags.verbose === true,
    log
  }
  return async (redis, { signal }) => await forwardEvents(redis, { ...options, signal })
}

function log (line: string): void {
  process.stderr.write(`maestro-rl: ${line}\n`)
}

function nonEmpty (flag: string, value: string | undefined): string | undefined {
  if (value === '') throw new UsageError(`--${flag} may not be empty`)
  return value
}

function wholeNumber (flag: string, text: string, min: number, max: number): number {
  const value = /^\d+$/.test(text) ? Number(text) : NaN
  if (value >= min && value <= max) return value
  throw new UsageError(`--${flag} must be a whole number from ${min} to ${max} (got ${JSON.stringify(text)})`)
}

function receiverUrl (text: string | undefined): URL {
  if (text === undefined) throw new UsageError('events forward needs --url, the receiver\'s http:// or https:// URL')
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new UsageError(`--url must be an http:// or https:// URL (got ${JSON.stringify(text)})`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--url must be an http:// or https:// URL (got ${url.protocol}…)`)
  // fetch refuses such a URL on every attempt: say so now, not once per retry forever.
  if (url.username !== '' || url.password !== '') throw new UsageError('--url may not hold credentials; pass them as --header \'authorization: …\'')
  return url
}

const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** `--header 'Name: value'`, as curl takes it. */
function headersFrom (lines: string[]): Record<string, string> {
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = line.slice(0, Math.max(colon, 0)).trim()
    const value = line.slice(colon + 1).trim()
    if (colon < 0 || !HEADER_NAME.test(name)) throw new UsageError(`--header must be "Name: value" with a valid header name (got ${JSON.stringify(line)})`)
    if (!/^[\t\x20-\x7e\x80-\xff]*$/.test(value)) throw new UsageError(`--header ${name}: the value holds a character a header cannot carry`)
    if (RESERVED_HEADERS.has(name.toLowerCase())) throw new UsageError(`--header ${name}: set by the forwarder itself, it cannot be given`)
    headers[name.toLowerCase()] = value
  }
  return headers
}
