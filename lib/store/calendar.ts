// The monthly quota runs on calendar months in UTC.

/** `yyyymm` of the UTC month holding `nowMs`, and the Unix ms at which that month starts and ends. */
export function utcMonth (nowMs: number): { id: number, start: number, end: number } {
  const date = new Date(nowMs)
  const year = date.getUTCFullYear()
  const month = date.getUTCMonth()
  return { id: year * 100 + month + 1, start: Date.UTC(year, month, 1), end: Date.UTC(year, month + 1, 1) }
}

/** utcMonth with the last answer kept: recomputed only when `nowMs` leaves that month. */
export class MonthCache {
  private month = { id: 0, start: 0, end: 0 }

  of (nowMs: number): { readonly id: number, readonly start: number, readonly end: number } {
    if (nowMs < this.month.start || nowMs >= this.month.end) this.month = utcMonth(nowMs)
    return this.month
  }
}
