// The exact reference: a sliding log that remembers every admitted request.

export interface Admission { readonly at: number, readonly cost: number }

/** Largest total cost admitted within any closed span [t - windowMs, t]. */
export function maxInAnyWindow (admitted: readonly Admission[], windowMs: number): number {
  let best = 0
  let sum = 0
  let start = 0
  for (let end = 0; end < admitted.length; end++) {
    sum += admitted[end].cost
    while (admitted[start].at < admitted[end].at - windowMs) sum -= admitted[start++].cost
    best = Math.max(best, sum)
  }
  return best
}

/** What an exact sliding log would decide: admit iff the cost fits in (t - windowMs, t]. */
export class SlidingLog {
  readonly admitted: Admission[] = []
  constructor (private readonly limit: number, private readonly windowMs: number) {}

  admit (at: number, cost = 1): boolean {
    let used = 0
    for (let i = this.admitted.length - 1; i >= 0 && this.admitted[i].at > at - this.windowMs; i--) used += this.admitted[i].cost
    if (used + cost > this.limit) return false
    this.admitted.push({ at, cost })
    return true
  }
}
