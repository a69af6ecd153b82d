// The store could not decide: no answer in time, the breaker is open, or there is no connection.

export class StoreUnavailableError extends Error {
  constructor (readonly why: 'timeout' | 'circuit-open' | 'not-connected', cause?: unknown) {
    super(`rate-limit store unavailable (${why})`, { cause })
    this.name = 'StoreUnavailableError'
  }
}
