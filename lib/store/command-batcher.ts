// Sends the store's commands of one event-loop turn as one pipeline: one write and one read for many
// requests instead of one each. Scripts are sent with EVALSHA; a NOSCRIPT answer re-sends that one
// command with EVAL, which also loads the script for the next EVALSHA.
import type { Redis } from 'ioredis'
import type { LuaScript } from './lua-script.js'

interface Queued {
  readonly script: LuaScript | undefined // undefined: a ZREM
  readonly args: ReadonlyArray<string | number>
  readonly resolve: (value: unknown) => void
  readonly reject: (err: unknown) => void
}

export class CommandBatcher {
  private queue: Queued[] = []
  private scheduled = false
  private readonly flushBound = (): void => this.flush()

  constructor (private readonly client: Redis) {}

  async script (script: LuaScript, args: ReadonlyArray<string | number>): Promise<unknown> {
    return await new Promise((resolve, reject) => this.push({ script, args, resolve, reject }))
  }

  async zrem (key: string, members: readonly string[]): Promise<unknown> {
    return await new Promise((resolve, reject) => this.push({ script: undefined, args: [key, ...members], resolve, reject }))
  }

  private push (entry: Queued): void {
    this.queue.push(entry)
    if (!this.scheduled) {
      this.scheduled = true
      // setImmediate, not nextTick: requests arriving in the same poll phase share one pipeline.
      setImmediate(this.flushBound)
    }
  }

  private flush (): void {
    const batch = this.queue
    this.queue = []
    this.scheduled = false
    const pipeline = this.client.pipeline()
    for (const { script, args } of batch) {
      if (script === undefined) pipeline.zrem(args[0] as string, ...args.slice(1) as string[])
      else pipeline.evalsha(script.sha, script.numberOfKeys, ...args)
    }
    pipeline.exec().then(results => {
      for (let i = 0; i < batch.length; i++) {
        const entry = batch[i]
        const [err, value] = results?.[i] ?? [new Error('pipeline returned no result'), undefined]
        if (err === null) entry.resolve(value)
        else if (entry.script !== undefined && err.message.startsWith('NOSCRIPT')) this.client.eval(entry.script.source, entry.script.numberOfKeys, ...entry.args).then(entry.resolve, entry.reject)
        else entry.reject(err)
      }
    }, (err: unknown) => {
      for (const entry of batch) entry.reject(err)
    })
  }
}
