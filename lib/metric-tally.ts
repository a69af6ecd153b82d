// Counts kept as plain numbers on the request path and handed to prom-client when it is read: its
// `collect` hook runs before every scrape (and every `get()`), so what a scrape shows is exact,
// while a request pays an addition instead of prom-client's label validation and hashing.

/** A prom-client counter or gauge child. */
interface Child { inc: (value: number) => void, dec?: (value: number) => void }

/** One series' additions not yet handed over. */
export class Tally {
  private pending = 0
  private listed = false

  constructor (private readonly book: TallyBook | undefined, private readonly child: Child) {}

  add (n: number): void {
    if (this.book === undefined) return this.hand(n) // a metric made elsewhere: no collect hook of ours
    this.pending += n
    if (!this.listed) {
      this.listed = true
      this.book.list(this)
    }
  }

  flush (): void {
    const n = this.pending
    this.pending = 0
    this.listed = false
    this.hand(n)
  }

  private hand (n: number): void {
    if (n > 0) this.child.inc(n)
    else if (n < 0) this.child.dec?.(-n) // a gauge's net change
  }
}

/** The tallies of one prom-client metric that have something to hand over. */
export class TallyBook {
  private listed: Tally[] = []

  list (tally: Tally): void {
    this.listed.push(tally)
  }

  flush (): void {
    const listed = this.listed
    this.listed = []
    for (const tally of listed) tally.flush()
  }
}

/** Books by metric: shared by every plugin instance in the process that uses the same metric. */
const books = new WeakMap<object, TallyBook>()

/** The `collect` option of a metric whose counts are tallied: hands them over before it is read. */
export function collectTallies (this: object): void {
  books.get(this)?.flush()
}

/**
 * A tally for one child of `metric`. Only a metric made with `collect: collectTallies` (prom-client
 * keeps its options as properties) hands tallies over; for any other the tally adds at once.
 */
export function tallyFor (metric: object, child: Child): Tally {
  if ((metric as { collect?: unknown }).collect !== collectTallies) return new Tally(undefined, child)
  let book = books.get(metric)
  if (book === undefined) {
    book = new TallyBook()
    books.set(metric, book)
  }
  return new Tally(book, child)
}
