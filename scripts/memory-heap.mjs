#!/usr/bin/env node
// Heap of the in-memory store under a stream of distinct anonymous clients: a real server with the
// plugin, and a child process sending one request from each of N loopback addresses (127.x.y.z, so
// Linux only). Prints the server's heap growth after a full GC.
//   npm run build && node --expose-gc scripts/memory-heap.mjs [clients] [memoryMaxKeys]
// (fastify.inject is no use here: it keeps some 9 KB per request itself.)
import { fork } from 'node:child_process'
import http from 'node:http'
import Fastify from 'fastify'
import rateLimiting from '../dist/index.js'

const clients = Number(process.argv[2] ?? 200_000)
const maxKeys = process.argv[3] === undefined ? undefined : Number(process.argv[3])
const addressOf = (i) => `127.${1 + ((i >> 16) & 127)}.${(i >> 8) & 255}.${i & 255}`

if (process.env.MEMORY_HEAP_PORT !== undefined) {
  // The child: 16 requests at a time, each on a connection of its own from its own address.
  const port = Number(process.env.MEMORY_HEAP_PORT)
  const send = (i) => new Promise((resolve, reject) => {
    const request = http.request({ host: '127.0.0.1', port, path: '/', agent: false, localAddress: addressOf(i) }, response => {
      response.resume()
      response.on('end', () => response.statusCode === 200 ? resolve() : reject(new Error(`status ${response.statusCode}`)))
    })
    request.on('error', reject)
    request.end()
  })
  let next = 0
  const worker = async () => { while (next < clients) await send(next++) }
  await Promise.all(Array.from({ length: 16 }, worker))
} else {
  if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc')
  const heap = () => { globalThis.gc(); globalThis.gc(); return process.memoryUsage().heapUsed }
  const app = Fastify()
  await app.register(rateLimiting, { metrics: false, ...(maxKeys === undefined ? {} : { memoryMaxKeys: maxKeys }) })
  app.get('/', async () => 'ok')
  const port = new URL(await app.listen({ host: '127.0.0.1', port: 0 })).port
  const before = heap()
  const started = performance.now()
  const child = fork(new URL(import.meta.url).pathname, process.argv.slice(2), { env: { ...process.env, MEMORY_HEAP_PORT: port } })
  const code = await new Promise(resolve => child.on('exit', resolve))
  if (code !== 0) throw new Error(`the client exited with ${code}`)
  const grown = heap() - before
  console.log(JSON.stringify({
    clients,
    memoryMaxKeys: app.rateLimitStore.maxKeys,
    entries: app.rateLimitStore.size,
    heapGrowthMB: Math.round(grown / 1e5) / 10,
    bytesPerClient: Math.round(grown / clients),
    seconds: Math.round((performance.now() - started) / 1000)
  }))
  await app.close()
}
