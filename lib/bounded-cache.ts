// A map of maps that starts again once it holds too many values: request-path caches whose keys
// come from traffic (subjects, tenants) must stay bounded. Two keys, not one joined string, so a
// lookup builds no string.
export class TwoKeyCache<V> {
  private readonly byFirst = new Map<string, Map<string, V>>()
  private size = 0

  constructor (private readonly maxValues: number) {}

  get (first: string, second: string): V | undefined {
    return this.byFirst.get(first)?.get(second)
  }

  /** Remembers a value that `get` did not have; when full, everything is forgotten first. */
  set (first: string, second: string, value: V): void {
    if (this.size >= this.maxValues) {
      this.byFirst.clear()
      this.size = 0
    }
    let bySecond = this.byFirst.get(first)
    if (bySecond === undefined) {
      bySecond = new Map()
      this.byFirst.set(first, bySecond)
    }
    bySecond.set(second, value)
    this.size++
  }
}
