// What usageReport() answers: one month's usage records, as billing reads them.
import { InvalidPolicyError } from '../errors.js'
import type { UsageRecord } from '../store/types.js'
import { check, USAGE_MONTH_PATTERN, UsageReportOptionsSchema } from './schemas.js'

/** One line of a month's usage report. */
export interface UsageReportRow {
  /** The tenant's id, or the organization's id when `scope` is 'organization'. */
  tenantId: string
  scope: 'tenant' | 'organization'
  /** The tier last seen that month; null when none was recorded. */
  tier: string | null
  /** null: the subject's month; a name: a bucket's own month under a cap of its own. */
  bucket: string | null
  used: number
  /** The monthly quota (or the bucket's cap) at the last admission; null: unlimited. */
  quota: number | null
}

export interface UsageReportOptions {
  /** `YYYY-MM`, UTC. */
  month: string
}

const MONTH = new RegExp(USAGE_MONTH_PATTERN)

/** Refuses anything but `{ month: 'YYYY-MM' }` of a real month, naming the field. */
export function checkReportOptions (options: UsageReportOptions): void {
  if (options === null || typeof options !== 'object') throw new InvalidPolicyError('options must be an object: { month: \'YYYY-MM\' }')
  const month: unknown = options.month
  if (typeof month !== 'string' || !MONTH.test(month)) {
    throw new InvalidPolicyError(`month must be a month as YYYY-MM, from 1970-01 to 9999-12 (got ${typeof month === 'string' ? JSON.stringify(month.slice(0, 40)) : month === undefined ? 'nothing' : typeof month})`)
  }
  check(UsageReportOptionsSchema, options, 'options') // what is left: an unknown field
}

/** The store's records as report rows, as they come. */
export async function * reportRows (records: AsyncIterable<UsageRecord>): AsyncGenerator<UsageReportRow> {
  for await (const { id, scope, tier, bucket, used, quota } of records) yield { tenantId: id, scope, tier, bucket, used, quota }
}
