// The monthly quota runs on calendar months in UTC.

/** `yyyymm` of the UTC month holding `nowMs`, and the Unix ms at which that month ends. */
export function utcMonth (nowMs: number): { id: number, end: number } {
  const date = new Date(nowMs)
  const year = date.getUTCFullYear()
  const month = date.getUTCMonth()
  return { id: year * 100 + month + 1, end: Date.UTC(year, month + 1, 1) }
}

/** utcMonth with the last answer kept: recomputed only when `nowMs` leaves that month. */
export class MonthCache {
  private month = { id: 0, start: 0, end: 0 }

  of (nowMs: number): { readonly id: number, readonly start: number, readonly end: number } {
    if (nowMs < this.month.start || nowMs >= this.month.end) {
      const { id, end } = utcMonth(nowMs)
      const date = new Date(nowMs)
      this.month = { id, start: Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1), end }
    }
    return this.month
  }
}
