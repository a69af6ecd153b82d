// Types of scripts/burst.mjs, for the test that runs its short variant.
export interface BurstSettings { redisUrl: string, requests: number, cpuMs: number, storeTimeoutMs: number }
export interface BurstResult { admitted: number, refused: number, other: number, degraded: number, mostRunning: number, causes: string, longestStallMs: number }
export declare function windowBurst (settings: BurstSettings): Promise<BurstResult>
export declare function concurrencyBurst (settings: BurstSettings): Promise<BurstResult>
export declare const LIMITS: { window: number, concurrency: number }
