// The monthly quota runs on calendar months in UTC.

/** `yyyymm` of the UTC month holding `nowMs`, and the Unix ms at which that month ends. */
export function utcMonth (nowMs: number): { id: number, end: number } {
  const date = new Date(nowMs)
  const year = date.getUTCFullYear()
  const month = date.getUTCMonth()
  return { id: year * 100 + month + 1, end: Date.UTC(year, month + 1, 1) }
}
