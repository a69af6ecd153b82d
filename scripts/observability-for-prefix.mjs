#!/usr/bin/env node
// Writes the alert rules, their promtool unit tests and the Grafana dashboard of docs/observability
// for a metrics prefix: every metric name `rate_limit_…` becomes `<prefix>rate_limit_…`, as
// lib/metrics.ts composes names (`prefix + name`). The shipped files stay the unprefixed default.
//
//   node scripts/observability-for-prefix.mjs <prefix> <folder>
//   node scripts/observability-for-prefix.mjs gateway_ ./observability
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const SOURCE = resolve(dirname(fileURLToPath(import.meta.url)), '../docs/observability')
/** Prometheus metric names: the prefix must keep the whole name valid. */
const PREFIX = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
/**
 * A metric name of this plugin, alone (not inside a longer name). Label values such as the reason
 * `rate_limit_exceeded` are not metric names and are left alone.
 */
const METRIC = /(?<![A-Za-z0-9_:])rate_limit_(?:requests_total|rejections_total|decision_duration_seconds(?:_bucket|_count|_sum)?|store_errors_total|fail_decisions_total|in_flight_leases|near_limit_total|policy_invalid_entries_total|quota_used_ratio)(?![A-Za-z0-9_:])/g

/** The text with every metric name prefixed. */
export function prefixMetricNames (text, prefix) {
  return text.replace(METRIC, name => prefix + name)
}

/** Writes alerts.yml, alerts.test.yml and grafana-dashboard.json for `prefix` into `folder`. */
export function writeObservability (prefix, folder) {
  if (typeof prefix !== 'string' || !PREFIX.test(prefix)) {
    throw new Error(`prefix ${JSON.stringify(prefix)} must make valid metric names: letters, digits, _ and :, not starting with a digit`)
  }
  mkdirSync(folder, { recursive: true })
  for (const file of ['alerts.yml', 'alerts.test.yml']) {
    writeFileSync(join(folder, file), prefixMetricNames(readFileSync(join(SOURCE, file), 'utf8'), prefix))
  }
  const dashboard = JSON.parse(prefixMetricNames(readFileSync(join(SOURCE, 'grafana-dashboard.json'), 'utf8'), prefix))
  // A dashboard of its own, so it can sit next to the unprefixed one in one Grafana.
  dashboard.uid = `${dashboard.uid}-${prefix.replace(/[^a-zA-Z0-9-]/g, '-')}`.slice(0, 40)
  dashboard.title = `${dashboard.title} (${prefix})`
  writeFileSync(join(folder, 'grafana-dashboard.json'), JSON.stringify(dashboard, null, 2) + '\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [prefix, folder] = process.argv.slice(2)
  if (prefix === undefined || folder === undefined) {
    console.error('usage: node scripts/observability-for-prefix.mjs <prefix> <folder>')
    process.exit(2)
  }
  try {
    writeObservability(prefix, folder)
    console.log(`wrote alerts.yml, alerts.test.yml and grafana-dashboard.json for ${prefix} to ${folder}`)
  } catch (err) {
    console.error(err.message)
    process.exit(2)
  }
}
