// A Lua script run with EVALSHA, falling back to EVAL only when Redis answers NOSCRIPT (after a
// restart, a failover or SCRIPT FLUSH). Any other error is the caller's to see.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Cluster, Redis } from 'ioredis'

export type RedisClient = Redis | Cluster

export class LuaScript {
  readonly source: string
  readonly sha: string
  readonly numberOfKeys: number

  /** `name` is a file in lib/lua named `<name>-<numberOfKeys>.lua`. */
  constructor (readonly name: string) {
    const match = /-(\d+)$/.exec(name)
    if (match === null) throw new Error(`Lua script name ${name} must end in -<numberOfKeys>`)
    this.numberOfKeys = Number(match[1])
    this.source = readFileSync(new URL(`../lua/${name}.lua`, import.meta.url), 'utf8')
    this.sha = createHash('sha1').update(this.source).digest('hex')
  }

  async run (client: RedisClient, args: ReadonlyArray<string | number>): Promise<unknown> {
    try {
      return await client.evalsha(this.sha, this.numberOfKeys, ...args)
    } catch (err) {
      if (!isNoScript(err)) throw err
      return await client.eval(this.source, this.numberOfKeys, ...args)
    }
  }
}

function isNoScript (err: unknown): boolean {
  return err instanceof Error && err.message.startsWith('NOSCRIPT')
}
