// The functions a CPU profile (node --cpu-prof, or BENCH_PROFILE=<dir> npm run bench) spent the most
// time in, by self time: what to look at first when a request costs more than it should.
//
//   node scripts/profile-top.mjs <file.cpuprofile> [--top N] [--match TEXT]
//
// Prints each function's share of the busy time (idle and the garbage collector's own line are
// counted apart), with its file and line; --match keeps only functions whose file contains TEXT.
import { readFileSync } from 'node:fs'
import { parseArgs } from 'node:util'

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '25' }, match: { type: 'string' } } })
if (positionals.length !== 1) {
  console.error('usage: node scripts/profile-top.mjs <file.cpuprofile> [--top N] [--match TEXT]')
  process.exit(2)
}
const profile = JSON.parse(readFileSync(positionals[0], 'utf8'))

// Self time of a node: its samples, each worth the time delta that follows it.
const selfMicros = new Map()
for (let i = 0; i < profile.samples.length; i++) {
  const id = profile.samples[i]
  selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0))
}
const byFunction = new Map()
let busy = 0
let idle = 0
for (const node of profile.nodes) {
  const micros = selfMicros.get(node.id) ?? 0
  const { functionName, url, lineNumber } = node.callFrame
  if (functionName === '(idle)') { idle += micros; continue }
  busy += micros
  const file = url.replace(/^file:\/\//, '').replace(/^.*\/node_modules\//, '')
  const key = `${functionName || '(anonymous)'} ${file === '' ? '' : `${file}:${lineNumber + 1}`}`
  byFunction.set(key, (byFunction.get(key) ?? 0) + micros)
}
const rows = [...byFunction].filter(([key]) => values.match === undefined || key.includes(values.match)).sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))
console.log(`busy ${(busy / 1e6).toFixed(2)} s, idle ${(idle / 1e6).toFixed(2)} s`)
for (const [key, micros] of rows) console.log(`${(100 * micros / busy).toFixed(1).padStart(5)} %  ${key}`)
