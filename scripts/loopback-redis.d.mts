// Types of scripts/loopback-redis.mjs, for the test helpers that start a redis-server with it.
import type { ChildProcess } from 'node:child_process'
export declare function freePort (): Promise<number>
export declare function waitForRedis (port: number, child: ChildProcess): Promise<void>
