// maestro-rl, the built command-line tool, run as a child process against real Redis.
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'
import { PolicyManager } from '../../dist/index.js'
import { REDIS_URL, sharedRedis, uniquePrefix } from './redis.js'

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url))

export interface Run { code: number | null, stdout: string, stderr: string, ms: number }

/**
 * Runs `node dist/cli.js …args` and waits for it to exit by itself. The child runs without the test
 * runner's coverage hooks (NODE_OPTIONS), which would triple the start-up cost of every run.
 */
export async function run (args: string[], env: Record<string, string | undefined> = {}): Promise<Run> {
  const started = Date.now()
  const childEnv = { ...process.env, NODE_OPTIONS: undefined, REDIS_URL, ...env }
  return await new Promise(resolve => {
    execFile(process.execPath, [CLI, ...args], { env: childEnv, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null
      resolve({ code, stdout, stderr, ms: Date.now() - started })
    })
  })
}

export interface BoundCli {
  prefix: string
  cli: (...args: string[]) => Promise<Run>
  /** Expects exit 0; returns the printed JSON. */
  ok: (...args: string[]) => Promise<any>
}

/**
 * A CLI bound to one test's own key prefix. Unless `used` is false, a service with the default
 * tiers has booted on the prefix first (it records its tiers), as in production.
 */
export function cliFor (t: Test, { used = true }: { used?: boolean } = {}): BoundCli {
  const redis = sharedRedis(t)
  const prefix = uniquePrefix(t, redis)
  const ready = used ? bootedOn(redis, prefix) : Promise.resolve()
  const cli = async (...args: string[]): Promise<Run> => {
    await ready
    return await run([...args, '--prefix', prefix])
  }
  const ok = async (...args: string[]): Promise<any> => {
    const result = await cli(...args)
    t.equal(result.code, 0, `maestro-rl ${args.join(' ')} ${result.stderr}`)
    return JSON.parse(result.stdout)
  }
  return { prefix, cli, ok }
}

/** What the plugin does at boot with its policies: load them, record the configured tiers. */
async function bootedOn (redis: ReturnType<typeof sharedRedis>, keyPrefix: string): Promise<void> {
  const policies = new PolicyManager(redis, { keyPrefix })
  await policies.start()
  await policies.recordConfiguredTiers()
  await policies.close()
}
