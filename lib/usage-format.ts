// A month's usage report as text, for the CLI and the admin route: CSV (RFC 4180) or JSON Lines.
// Rows are gathered into chunks of a few kilobytes, so a writer pays one write per chunk, not per
// row, and memory holds one chunk whatever the number of rows.
import type { UsageReportRow } from './policies/month-report.js'

export type UsageFormat = 'csv' | 'json'

export const USAGE_CSV_HEADER = 'scope,tenantId,tier,bucket,used,quota\r\n'

/** A chunk is handed on once it holds about this many characters. */
const CHUNK_CHARS = 16_384

/** A CSV field: quoted when it holds a comma, a quote, a line break or edge spaces; null is empty. */
export function csvField (value: string | number | null): string {
  if (value === null) return ''
  const text = String(value)
  return /[",\r\n]|^\s|\s$/.test(text) ? '"' + text.replace(/"/g, '""') + '"' : text
}

export function csvRow (row: UsageReportRow): string {
  return [row.scope, row.tenantId, row.tier, row.bucket, row.used, row.quota].map(csvField).join(',') + '\r\n'
}

/** One JSON object per line; JSON escapes every line break inside a string. */
export function jsonLine (row: UsageReportRow): string {
  const { scope, tenantId, tier, bucket, used, quota } = row
  return JSON.stringify({ scope, tenantId, tier, bucket, used, quota }) + '\n'
}

/** The report as text chunks: CSV with its header line, or JSON Lines. */
export async function * usageText (rows: AsyncIterable<UsageReportRow>, format: UsageFormat): AsyncGenerator<string> {
  const line = format === 'csv' ? csvRow : jsonLine
  let chunk = format === 'csv' ? USAGE_CSV_HEADER : ''
  for await (const row of rows) {
    chunk += line(row)
    if (chunk.length >= CHUNK_CHARS) {
      yield chunk
      chunk = ''
    }
  }
  if (chunk !== '') yield chunk
}
