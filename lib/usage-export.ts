// maestro-rl usage export: a month's usage report written to a stream as it is read, waiting for
// the stream to drain (a slow pipe holds the reading back; memory holds one chunk).
import { once } from 'node:events'
import type { Writable } from 'node:stream'
import type { UsageReportRow } from './policies/month-report.js'
import { usageText, type UsageFormat } from './usage-format.js'

export const USAGE_FORMATS: readonly UsageFormat[] = ['csv', 'json']

export async function writeUsageExport (rows: AsyncIterable<UsageReportRow>, format: UsageFormat, out: Writable): Promise<void> {
  for await (const chunk of usageText(rows, format)) {
    if (!out.write(chunk)) await once(out, 'drain')
  }
}
