// Refusals (429, 403) go to Fastify as errors, so an app's error handler sees them. Fastify's own
// handler writes only `statusCode`, `code`, `error` and `message`: this puts the refusal's `reason`
// back into that body, and only into that one (a body an app's error handler made is left alone).
import { STATUS_CODES } from 'node:http'
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify'

/** A refusal whose default body names its reason (`rate_limit_exceeded`, `blocked`, ...). */
export interface Refusal extends FastifyError {
  reason: string
}

const kRefusal = Symbol('maestro-rate-limiting.refusal')

declare module 'fastify' {
  interface FastifyRequest {
    [kRefusal]: Refusal | null
  }
}

/** Marks the request as refused with `error` (which the caller then hands to Fastify). */
export function refuse<E extends FastifyError> (request: FastifyRequest, error: E, reason: string): E & Refusal {
  const refusal = Object.assign(error, { reason })
  request[kRefusal] = refusal
  return refusal
}

export function addRefusalReason (fastify: FastifyInstance): void {
  fastify.decorateRequest(kRefusal, null)
  fastify.addHook('onSend', (request, reply, payload, done) => {
    const refusal = request[kRefusal]
    if (refusal === null || typeof payload !== 'string') return done(null, payload)
    request[kRefusal] = null
    done(null, withReason(payload, refusal, reply.statusCode))
  })
}

/** The body with the reason in it, when it is exactly what Fastify's own error handler wrote for the refusal. */
function withReason (payload: string, refusal: Refusal, statusCode: number): string {
  const error = STATUS_CODES[statusCode] ?? ''
  // Fastify's handler writes these four fields in this order; a string compare spares a parse.
  if (payload !== JSON.stringify({ statusCode, code: refusal.code, error, message: refusal.message }) && !sameFields(payload, refusal, statusCode, error)) return payload
  return JSON.stringify({ statusCode, error, code: refusal.code, reason: refusal.reason, message: refusal.message })
}

/** The same four fields, written another way (escapes, order). */
function sameFields (payload: string, refusal: Refusal, statusCode: number, error: string): boolean {
  let body: Record<string, unknown>
  try {
    body = JSON.parse(payload)
  } catch {
    return false
  }
  return body !== null && typeof body === 'object' && Object.keys(body).length === 4 && body.statusCode === statusCode &&
    body.error === error && body.code === refusal.code && body.message === refusal.message
}
