// A Lua script run with EVALSHA, falling back to EVAL only when Redis answers NOSCRIPT (after a
// restart, a failover or SCRIPT FLUSH). Any other error is the caller's to see.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Cluster, Redis } from 'ioredis'

export type RedisClient = Redis | Cluster

export class LuaScript {
  readonly source: string
  readonly sha: string
  /** Undefined for a script whose callers say how many keys each call has. */
  readonly numberOfKeys: number | undefined

  /** `name` is a file in lib/lua: `<name>-<numberOfKeys>.lua`, or any name for a variable count. */
  constructor (readonly name: string) {
    const match = /-(\d+)$/.exec(name)
    this.numberOfKeys = match === null ? undefined : Number(match[1])
    this.source = readFileSync(new URL(`../lua/${name}.lua`, import.meta.url), 'utf8')
    this.sha = createHash('sha1').update(this.source).digest('hex')
  }

  async run (client: RedisClient, args: ReadonlyArray<string | number>, numberOfKeys = this.numberOfKeys): Promise<unknown> {
    if (numberOfKeys === undefined) throw new TypeError(`Lua script ${this.name} needs its number of keys`)
    try {
      return await client.evalsha(this.sha, numberOfKeys, ...args)
    } catch (err) {
      if (!isNoScript(err)) throw err
      return await client.eval(this.source, numberOfKeys, ...args)
    }
  }
}

function isNoScript (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT')
}
