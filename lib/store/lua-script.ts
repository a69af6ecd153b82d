// A Lua script run with EVALSHA, falling back to EVAL only when Redis answers NOSCRIPT (after a
// restart, a failover or SCRIPT FLUSH). Any other error is the caller's to see.
//
// A script is a file of lib/lua, built from named parts: a line `--- @include "name"` stands for
// lib/lua/includes/name.lua, so two scripts share one copy of a helper (the calendar, the sliding
// window, the leases) and each part reads alone. Each part is included once, where first named.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Cluster, Redis } from 'ioredis'

export type RedisClient = Redis | Cluster

const LUA_DIR = new URL('../lua/', import.meta.url)
const INCLUDE = /^--- @include "([a-z0-9-]+)"$/gm

/** The source of lib/lua/`file`, with its includes (and theirs) put in place. */
export function assembleLua (file: string, included = new Set<string>()): string {
  return readFileSync(new URL(file, LUA_DIR), 'utf8').replace(INCLUDE, (_line, part: string) => {
    if (included.has(part)) return `-- (${part}: included above)`
    included.add(part)
    return assembleLua(`includes/${part}.lua`, included).trimEnd()
  })
}

export class LuaScript {
  readonly source: string
  readonly sha: string
  /** Undefined for a script whose callers say how many keys each call has. */
  readonly numberOfKeys: number | undefined

  /** `name` is a file in lib/lua: `<name>-<numberOfKeys>.lua`, or any name for a variable count. */
  constructor (readonly name: string) {
    const match = /-(\d+)$/.exec(name)
    this.numberOfKeys = match === null ? undefined : Number(match[1])
    this.source = assembleLua(`${name}.lua`)
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
