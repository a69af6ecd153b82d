#!/usr/bin/env node
// maestro-rl: reads and changes the rate-limit policies of every service sharing one Redis.
// Each command connects, loads the stored policies, does one thing through a PolicyManager (the class
// behind fastify.policies, so input is judged exactly as there), prints JSON and disconnects.
// `events tail|forward` (lib/events/) read the quota-alert stream instead, until stopped.
// Exit status: 0 done, 1 Redis unreachable or failing, 2 bad usage or input refused, 3 nothing stored
// under the prefix (a read would only print defaults and zeros).
import { parseArgs } from 'node:util'
import type { FastifyBaseLogger } from 'fastify'
import type { Redis } from 'ioredis'
import { connect, redact, redisTarget, RedisError, UsageError } from './cli-connection.js'
import { InvalidOptionError, InvalidPolicyError } from './errors.js'
import { EVENT_OPTIONS, runEventsCommand } from './events/command.js'
import { resolveOptions } from './options.js'
import { PolicyManager, type TenantOverride } from './policies/policy-manager.js'
import type { TierLimitsInput } from './tiers.js'
import { USAGE_FORMATS, writeUsageExport } from './usage-export.js'
import type { UsageFormat } from './usage-format.js'

const USAGE = `maestro-rl: rate-limit policies of every service sharing one Redis

Usage: maestro-rl <command> [arguments] [--redis URL] [--prefix P] [--env E]

  show <tenant> [--tier T]               effective limits of a tenant, and where each comes from
  usage <tenant> [--bucket B] [--tier T] [--org O]
                                         what a tenant has used and has left (--org: the organization
                                         its keys live in; default: the one it was last seen in)
  usage export --month YYYY-MM [--format csv|json]
                                         every tenant's and organization's usage of a month, streamed:
                                         csv (default; header scope,tenantId,tier,bucket,used,quota)
                                         or json (JSON Lines: one object per line)
  reset-usage <tenant> [--org O]         forget every counter and lease of a tenant (its own keys and
                                         those in its organization: --org, else the last one seen)
  override set <tenant> [--per-minute N] [--per-hour N] [--concurrent N] [--monthly N] [--expires S]
  override get <tenant>
  override rm <tenant>
  multiplier set <env> <m>               scale every limit in an environment (rounded down, never below 1)
  multiplier get [<env>]
  multiplier rm <env>
  tier list
  tier set <name> --per-minute N --per-hour N --concurrent N --monthly N
  tier rm <name>
  tenant-tier set <tenant> <tier>        the tier of a tenant whose extractor reports none
  tenant-tier rm <tenant>
  block <tenant> [--seconds S] [--reason R]
  unblock <tenant>
  shadow on|off [--tier T | --tenant ID] count and report limits without enforcing them
  shadow status
  org show <org> [--tier T]              effective limits of an organization (the sum of its tenants)
  org usage <org> [--tier T]             what an organization has used and has left
  org reset-usage <org>                  forget the organization's own counters (not its tenants')
  org override set <org> [--per-minute N] [--per-hour N] [--concurrent N] [--monthly N] [--expires S]
  org override get <org>
  org override rm <org>
  org tier set <org> <tier>              the tier of an organization whose extractor reports none
  org tier get <org>
  org tier rm <org>
  events tail [--from-start] [--stream KEY] [--count N]
                                         print quota alerts as they are appended, one JSON line each
                                         (--from-start: every entry kept; --count: exit after N)
  events forward --url URL [--group G] [--consumer C] [--stream KEY] [--timeout MS]
                 [--max-backoff MS] [--claim-idle MS] [--header 'Name: value']... [--verbose]
                                         POST each quota alert to URL, once per event id, retrying
                                         until a 2xx; runs until Ctrl-C or SIGTERM
  help

Limits are whole numbers, or "unlimited". Seconds may be fractional.
  --redis URL    default REDIS_URL, else redis://127.0.0.1:6379
  --prefix P     the plugin's keyPrefix; default maestro-rl
  --env E        the environment whose multiplier show and usage (org too) apply; default NODE_ENV, else production
Events (quota alerts in the stream <prefix>:events unless --stream KEY):
  --group G        consumer group; default maestro-rl-forwarder (made, from the first entry, if missing)
  --consumer C     this forwarder's name in the group; default <hostname>:<pid>. Keep it across
                   restarts so a restart re-delivers what the last run left pending at once
  --timeout MS     per POST; default 10000
  --max-backoff MS longest wait between attempts (exponential from 500 ms, with jitter); default 60000
  --claim-idle MS  entries other consumers left pending this long are taken over; default 60000
  --header 'N: v'  an extra request header (repeatable), e.g. 'authorization: Bearer …'
  --verbose        one stderr line per delivery, not only per failure
Tiers: the defaults, runtime tiers, and those services configured in code (recorded at their boot).
Prints JSON on stdout (events tail: one event per line; usage export: CSV or JSON Lines). Exit
status: 0 done (events: stopped by Ctrl-C or SIGTERM, or --count reached), 1 Redis unreachable or
failing, 2 bad usage or input refused,
3 nothing stored under the prefix (no service has started on it, no policy set): reads refuse;
changes are made, with a note on stderr.
`

const OPTIONS = {
  redis: { type: 'string' },
  prefix: { type: 'string' },
  env: { type: 'string' },
  tier: { type: 'string' },
  tenant: { type: 'string' },
  bucket: { type: 'string' },
  org: { type: 'string' },
  'per-minute': { type: 'string' },
  'per-hour': { type: 'string' },
  concurrent: { type: 'string' },
  monthly: { type: 'string' },
  expires: { type: 'string' },
  seconds: { type: 'string' },
  reason: { type: 'string' },
  month: { type: 'string' },
  format: { type: 'string' },
  help: { type: 'boolean', short: 'h' }
} as const

type FlagName = Exclude<keyof typeof OPTIONS, 'help'>
type Flags = Partial<Record<FlagName, string>>
const GLOBAL_FLAGS = new Set(['redis', 'prefix', 'env', 'help'])

/** A read on a prefix nothing is stored under: exit 3. */
class UnusedPrefixError extends Error {}

interface Command {
  /** Names of the positional arguments; a trailing `?` marks an optional one. */
  args: string[]
  flags: FlagName[]
  /** Only reads: refused on a prefix nothing is stored under, where it would report defaults. */
  reads?: true
  /** What `run` returns is printed as JSON, unless it is STREAMED (the command wrote its own output). */
  run (policies: PolicyManager, args: string[], flags: Flags): Promise<unknown>
}

/** A command's result when it wrote its output itself, as it went. */
const STREAMED = Symbol('streamed')

const OVERRIDE_FLAGS: FlagName[] = ['per-minute', 'per-hour', 'concurrent', 'monthly', 'expires']

const LIMIT_FLAGS: Array<[FlagName, keyof TierLimitsInput]> = [
  ['per-minute', 'requestsPerMinute'], ['per-hour', 'requestsPerHour'], ['concurrent', 'concurrentRequests'], ['monthly', 'monthlyQuota']
]

const COMMANDS: Record<string, Command> = {
  show: { args: ['tenant'], flags: ['tier'], reads: true, run: async (p, [tenant], f) => await p.resolve(tenant, f.tier) },
  usage: {
    args: ['tenant'],
    flags: ['bucket', 'tier', 'org'],
    reads: true,
    run: async (p, [tenant], f) => await p.usage(tenant, {
      ...(f.bucket === undefined ? {} : { bucket: f.bucket }),
      ...(f.tier === undefined ? {} : { tier: f.tier }),
      ...(f.org === undefined ? {} : { organizationId: f.org })
    })
  },
  'usage export': {
    args: [],
    flags: ['month', 'format'],
    reads: true,
    run: async (p, _args, f) => {
      if (f.month === undefined) throw new UsageError('usage export needs --month YYYY-MM')
      const format = (f.format ?? 'csv') as UsageFormat
      if (!USAGE_FORMATS.includes(format)) throw new UsageError(`--format must be ${USAGE_FORMATS.join(' or ')} (got ${JSON.stringify(f.format)})`)
      await writeUsageExport(p.usageReport({ month: f.month }), format, process.stdout)
      return STREAMED
    }
  },
  'reset-usage': {
    args: ['tenant'],
    flags: ['org'],
    run: async (p, [tenant], f) => {
      await p.resetUsage(tenant, f.org === undefined ? {} : { organizationId: f.org })
      return { tenantId: tenant, reset: true }
    }
  },
  'override set': {
    args: ['tenant'],
    flags: OVERRIDE_FLAGS,
    run: async (p, [tenant], f) => {
      await p.setTenantOverride(tenant, overrideFrom(f))
      return await p.getTenantOverride(tenant)
    }
  },
  'override get': { args: ['tenant'], flags: [], reads: true, run: async (p, [tenant]) => await p.getTenantOverride(tenant) },
  'override rm': { args: ['tenant'], flags: [], run: async (p, [tenant]) => removal(await p.removeTenantOverride(tenant), `tenant ${tenant} has no override`) },
  'multiplier set': {
    args: ['env', 'multiplier'],
    flags: [],
    run: async (p, [environment, multiplier]) => {
      await p.setEnvironmentMultiplier(environment, numberFrom(multiplier) as number)
      return { environment, multiplier: await p.getEnvironmentMultiplier(environment) }
    }
  },
  'multiplier get': {
    args: ['env?'],
    flags: [],
    reads: true,
    run: async (p, [environment = p.environment]) => ({ environment, multiplier: await p.getEnvironmentMultiplier(environment) })
  },
  'multiplier rm': { args: ['env'], flags: [], run: async (p, [env]) => removal(await p.removeEnvironmentMultiplier(env), `environment ${env} has no multiplier`) },
  'tier list': { args: [], flags: [], reads: true, run: async p => await p.listTiers() },
  'tier set': {
    args: ['name'],
    flags: ['per-minute', 'per-hour', 'concurrent', 'monthly'],
    run: async (p, [name], f) => {
      await p.setTier(name, limitsFrom(f) as unknown as TierLimitsInput)
      return { name, ...(await p.listTiers())[name] }
    }
  },
  'tier rm': { args: ['name'], flags: [], run: async (p, [name]) => removal(await p.removeTier(name), `tier ${name} is not defined at runtime`) },
  'tenant-tier set': {
    args: ['tenant', 'tier'],
    flags: [],
    run: async (p, [tenant, tier]) => { await p.setTenantTier(tenant, tier); return { tenantId: tenant, tier } }
  },
  'tenant-tier rm': { args: ['tenant'], flags: [], run: async (p, [tenant]) => removal(await p.removeTenantTier(tenant), `tenant ${tenant} has no stored tier`) },
  block: {
    args: ['tenant'],
    flags: ['seconds', 'reason'],
    run: async (p, [tenant], f) => {
      const options: { seconds?: number, reason?: string } = {}
      if (f.seconds !== undefined) options.seconds = numberFrom(f.seconds) as number
      if (f.reason !== undefined) options.reason = f.reason
      await p.block(tenant, options)
      return { tenantId: tenant, blocked: (await p.resolve(tenant)).blocked }
    }
  },
  unblock: { args: ['tenant'], flags: [], run: async (p, [tenant]) => removal(await p.unblock(tenant), `tenant ${tenant} is not blocked`) },
  'shadow on': { args: [], flags: ['tier', 'tenant'], run: async (p, _args, f) => await shadow(p, f, true) },
  'shadow off': { args: [], flags: ['tier', 'tenant'], run: async (p, _args, f) => await shadow(p, f, false) },
  'shadow status': { args: [], flags: [], reads: true, run: async p => await p.shadowModes() },
  'org show': { args: ['org'], flags: ['tier'], reads: true, run: async (p, [org], f) => await p.resolveOrganization(org, f.tier) },
  'org usage': {
    args: ['org'],
    flags: ['tier'],
    reads: true,
    run: async (p, [org], f) => await p.usage(org, { scope: 'organization', ...(f.tier === undefined ? {} : { tier: f.tier }) })
  },
  'org reset-usage': {
    args: ['org'],
    flags: [],
    run: async (p, [org]) => { await p.resetUsage(org, { scope: 'organization' }); return { organizationId: org, reset: true } }
  },
  'org override set': {
    args: ['org'],
    flags: OVERRIDE_FLAGS,
    run: async (p, [org], f) => {
      await p.setOrganizationOverride(org, overrideFrom(f))
      return await p.getOrganizationOverride(org)
    }
  },
  'org override get': { args: ['org'], flags: [], reads: true, run: async (p, [org]) => await p.getOrganizationOverride(org) },
  'org override rm': { args: ['org'], flags: [], run: async (p, [org]) => removal(await p.removeOrganizationOverride(org), `organization ${org} has no override`) },
  'org tier set': {
    args: ['org', 'tier'],
    flags: [],
    run: async (p, [org, tier]) => { await p.setOrganizationTier(org, tier); return { organizationId: org, tier } }
  },
  'org tier get': { args: ['org'], flags: [], reads: true, run: async (p, [org]) => ({ organizationId: org, tier: await p.getOrganizationTier(org) }) },
  'org tier rm': { args: ['org'], flags: [], run: async (p, [org]) => removal(await p.removeOrganizationTier(org), `organization ${org} has no stored tier`) }
}

/** The longest command name has this many words (`org override set`). */
const MAX_COMMAND_WORDS = 3

async function shadow (p: PolicyManager, f: Flags, enabled: boolean): Promise<unknown> {
  if (f.tier !== undefined && f.tenant !== undefined) throw new UsageError('shadow takes --tier or --tenant, not both')
  if (f.tier !== undefined) await p.setShadowMode({ scope: 'tier', tier: f.tier }, enabled)
  else if (f.tenant !== undefined) await p.setShadowMode({ scope: 'tenant', tenantId: f.tenant }, enabled)
  else await p.setShadowMode({ scope: 'global' }, enabled)
  return await p.shadowModes()
}

function removal (removed: boolean, nothing: string): { removed: boolean } {
  if (!removed) process.stderr.write(`maestro-rl: nothing to remove: ${nothing}\n`)
  return { removed }
}

/** A number when the text is one; else the text itself, so the policy check names the field. */
function numberFrom (text: string): unknown {
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text.trim()) ? Number(text) : text
}

/** An override from the limit flags and --expires. */
function overrideFrom (flags: Flags): TenantOverride {
  const override: Record<string, unknown> = limitsFrom(flags)
  if (flags.expires !== undefined) override.expiresInSeconds = numberFrom(flags.expires)
  return override as TenantOverride
}

function limitsFrom (flags: Flags): Record<string, unknown> {
  const limits: Record<string, unknown> = {}
  for (const [flag, field] of LIMIT_FLAGS) {
    const text = flags[flag]
    if (text !== undefined) limits[field] = limitFrom(flag, text)
  }
  return limits
}

/**
 * A limit flag's value: a whole number, or null for "unlimited". Checked here, not left to the policy
 * check, because a number too large for a double (1e400) reads as Infinity, which policies take to
 * mean unlimited: a typo would lift every limit without a word.
 */
function limitFrom (flag: FlagName, text: string): number | null {
  if (text === 'unlimited') return null
  const value = numberFrom(text)
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value
  throw new UsageError(`--${flag} must be a whole number from 0 to ${Number.MAX_SAFE_INTEGER}, or "unlimited" (got ${JSON.stringify(text)})`)
}

/** The command named by the positionals (the longest name that matches), and its arguments. */
function findCommand (positionals: string[]): { name: string, command: Command, args: string[] } {
  let words = Math.min(MAX_COMMAND_WORDS, positionals.length)
  while (words > 0 && COMMANDS[positionals.slice(0, words).join(' ')] === undefined) words--
  if (words === 0) throw unknownCommand(positionals)
  const name = positionals.slice(0, words).join(' ')
  const command = COMMANDS[name]
  const args = positionals.slice(words)
  const required = command.args.filter(a => !a.endsWith('?')).length
  if (args.length < required || args.length > command.args.length) {
    const wanted = command.args.map(a => a.endsWith('?') ? `[<${a.slice(0, -1)}>]` : `<${a}>`).join(' ')
    throw new UsageError(`${name} takes ${wanted === '' ? 'no arguments' : wanted}`)
  }
  return { name, command, args }
}

/** What to say about positionals that name no command: the verbs a group takes, or that it is unknown. */
function unknownCommand (positionals: string[]): UsageError {
  const names = Object.keys(COMMANDS)
  for (let words = Math.min(MAX_COMMAND_WORDS - 1, positionals.length); words > 0; words--) {
    const group = positionals.slice(0, words).join(' ')
    const verbs = names.filter(c => c.startsWith(group + ' ')).map(c => c.slice(group.length + 1))
    if (verbs.length === 0) continue
    const next = positionals[words]
    return new UsageError(`${group} needs one of: ${verbs.join(', ')}${next === undefined ? '' : ` (not ${next})`}`)
  }
  return new UsageError(`unknown command ${positionals[0]}`)
}

/** Runs one command line; returns the exit status. */
async function main (argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | string[] | undefined>
  let positionals: string[]
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: { ...OPTIONS, ...EVENT_OPTIONS }, allowPositionals: true, strict: true }))
  } catch (err) {
    return fail(2, `${(err as Error).message} (see maestro-rl help)`)
  }
  if (values.help === true || positionals[0] === 'help') {
    process.stdout.write(USAGE)
    return 0
  }
  if (positionals.length === 0) {
    process.stderr.write(USAGE)
    return 2
  }

  let redis: Redis | undefined
  let policies: PolicyManager | undefined
  try {
    const { help: _help, ...allFlags } = values
    // Long-running, without policies: a connection of their own, closed when they stop.
    if (positionals[0] === 'events') return await runEventsCommand(positionals.slice(1), allFlags, GLOBAL_FLAGS)
    const { name, command, args } = findCommand(positionals)
    for (const flag of Object.keys(allFlags)) {
      if (!GLOBAL_FLAGS.has(flag) && !command.flags.includes(flag as FlagName)) throw new UsageError(`${name} does not take --${flag}`)
    }
    const flags = allFlags as Flags // only the command's own flags, all strings
    const { url, source } = redisTarget(flags.redis)
    const settings = { keyPrefix: flags.prefix, environment: flags.env }
    resolveOptions(settings) // a bad prefix or environment is refused before connecting
    redis = await connect(url, source)
    const failures: unknown[] = []
    const log = { warn () {}, error (context: { err?: unknown }) { failures.push(context?.err) } }
    // No tiers of its own: the ones services recorded come before the built-in defaults.
    policies = new PolicyManager(redis, { ...settings, recordedTiersFirst: true, log: log as unknown as Pick<FastifyBaseLogger, 'warn' | 'error'> })
    await policies.reload()
    if (failures.length > 0) throw new RedisError(`cannot read the policies: ${(failures[0] as Error)?.message ?? 'unknown error'}`)
    if (!policies.prefixInUse) {
      const nothing = `nothing is stored under prefix ${policies.keyPrefix} at ${redact(new URL(url))}: no service has started on it and no policy was set (check --prefix)`
      if (command.reads === true) throw new UnusedPrefixError(nothing)
      process.stderr.write(`maestro-rl: note: ${nothing}; making the change anyway\n`)
    }
    const result = await command.run(policies, args, flags)
    if (result !== STREAMED) process.stdout.write(JSON.stringify(result, null, 2) + '\n')
    return 0
  } catch (err) {
    if (err instanceof UsageError) return fail(2, `${err.message} (see maestro-rl help)`)
    if (err instanceof InvalidPolicyError || err instanceof InvalidOptionError) return fail(2, (err as Error).message)
    if (err instanceof RedisError) return fail(1, err.message)
    if (err instanceof UnusedPrefixError) return fail(3, err.message)
    return fail(1, err instanceof Error ? err.message : String(err))
  } finally {
    await policies?.close()
    if (redis !== undefined) await redis.quit().catch(() => redis?.disconnect())
  }
}

function fail (status: number, message: string): number {
  process.stderr.write(`maestro-rl: ${message}\n`)
  return status
}

process.exitCode = await main(process.argv.slice(2))
