// A quota alert: an admission took a month count across a share of its monthly quota. Built on the
// instance that saw the crossing, from the store's report and what the request knew (who, which tier).
import type { Crossing } from '../store/types.js'

export interface QuotaAlertEvent {
  /** The same crossing always carries the same id, so a duplicate (at-least-once delivery) is recognisable. */
  readonly id: string
  /** Whose count: a tenant's, or an organization's (the sum of its tenants). */
  readonly scope: 'tenant' | 'organization'
  /** The tenant's id, or the organization's when `scope` is `organization`. */
  readonly tenantId: string
  readonly tier: string | null
  /** null: the subject's monthly quota; a name: a route bucket's own monthly cap. */
  readonly bucket: string | null
  /** The UTC month, `YYYY-MM`. */
  readonly month: string
  readonly threshold: number
  /** The month count right after the crossing. */
  readonly used: number
  readonly quota: number
  /** Unix ms, the store's clock at the crossing. */
  readonly at: number
}

/** `YYYY-MM` of the UTC month holding `at`. */
export function monthOf (at: number): string {
  return new Date(at).toISOString().slice(0, 7)
}

export function alertId (month: string, scope: string, subject: string, bucket: string | null, threshold: number, quota: number): string {
  return `${month}:${scope}:${subject}:${bucket ?? '-'}:${threshold}:${quota}`
}

/** The event of one crossing; `subject` and `tier` are the crossing scope's (tenant or organization). */
export function alertEvent (crossing: Crossing, subject: string, tier: string | null, bucket: string | undefined, at: number): QuotaAlertEvent {
  const month = monthOf(at)
  const ofBucket = crossing.bucket && bucket !== undefined ? bucket : null
  return {
    id: alertId(month, crossing.scope, subject, ofBucket, crossing.threshold, crossing.quota),
    scope: crossing.scope,
    tenantId: subject,
    tier,
    bucket: ofBucket,
    month,
    threshold: crossing.threshold,
    used: crossing.used,
    quota: crossing.quota,
    at
  }
}
