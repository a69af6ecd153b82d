// Types of scripts/observability-for-prefix.mjs, for the test that runs it.
export declare function prefixMetricNames (text: string, prefix: string): string
export declare function writeObservability (prefix: string, folder: string): void
