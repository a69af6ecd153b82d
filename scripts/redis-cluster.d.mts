// Types of scripts/redis-cluster.mjs, for the tests that start a cluster with it.
export declare function startCluster (firstPort: number, dataDir?: string): Promise<{ ports: number[], pids: number[] }>
export declare function stopCluster (pids: number[]): void
