// Items asked for during one event-loop turn, handed over together at its end: the batchers send
// each turn's admissions, or its settlements, as one script call.
/** A call of a batch script holds at most this many items, so it never holds Redis for long (about 2 ms). */
export const MAX_ITEMS_PER_CALL = 128

export class TurnQueue<T> {
  private items: T[] = []
  private scheduled = false
  private readonly flushBound = (): void => {
    const items = this.items
    this.items = []
    this.scheduled = false
    this.flush(items)
  }

  constructor (private readonly flush: (items: T[]) => void) {}

  push (item: T): void {
    this.items.push(item)
    if (!this.scheduled) {
      this.scheduled = true
      // setImmediate, not nextTick: requests arriving in the same poll phase share one call.
      setImmediate(this.flushBound)
    }
  }
}
