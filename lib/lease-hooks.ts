// When a request is over: its concurrency lease goes back and its settled cost is counted. A concurrency limit bounds the handlers running at
// once, so the lease is held from admission until the response has been sent, on every route and
// on requests that match none (404s). Added once for the whole instance: a lease taken by any hook
// (a route's or the 404 limiter's) is always given back.
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Limiter } from './limiter.js'

export function addLeaseHooks (fastify: FastifyInstance, limiter: Limiter): void {
  // The usual end: the response is written (or failed to be).
  fastify.addHook('onResponse', (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    limiter.finish(request, true)
    done()
  })
  // A client that goes away does not stop its handler: the slot stays taken until the handler
  // answers (below), but is no longer renewed, so a handler that never answers frees it one lease
  // lifetime later. A socket timeout ends the same way.
  fastify.addHook('onRequestAbort', (request: FastifyRequest, done: () => void) => {
    limiter.finish(request, false)
    done()
  })
  fastify.addHook('onTimeout', (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
    limiter.stopRenewing(request)
    done()
  })
  // For an aborted request onResponse never runs (nothing is written); its handler's answer is the end.
  fastify.addHook('onSend', (request: FastifyRequest, _reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
    if (clientGone(request)) limiter.finish(request, true)
    done(null, payload)
  })
}

/** Whether the client closed the connection before its response. */
export function clientGone (request: FastifyRequest): boolean {
  return request.raw.aborted || request.raw.socket?.destroyed === true
}
