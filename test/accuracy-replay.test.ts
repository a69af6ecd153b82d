// The short variant of the accuracy replay: scripts/accuracy.mjs over both stores must find that
// this plugin never admits more than the limit in any window, where a fixed window admits 2×.
import { spawnSync } from 'node:child_process'
import t from 'tap'

t.test('accuracy replay (memory and Redis Lua)', async t => {
  const run = spawnSync(process.execPath, ['scripts/accuracy.mjs', '--redis'], { encoding: 'utf8', timeout: 120_000 })
  t.equal(run.status, 0, run.stderr)
  const rows = run.stdout.split('\n').filter(line => line.startsWith('| ') && !line.startsWith('| trace'))
  const ours = rows.filter(r => r.includes('| maestro'))
  t.equal(ours.length, 10, 'five traces × two stores')
  for (const row of ours) t.match(row, /\| 1\.00× \| 0\.0 % \|/, row)
  t.ok(rows.some(r => r.includes('| fixed window |') && r.includes('| 2.00× |')), 'the fixed window shows its 2× edge')
  for (const trace of new Set(ours.map(r => r.split('|')[1]))) {
    const [memory, redis] = ours.filter(r => r.split('|')[1] === trace).map(r => r.split('|').slice(3).join('|'))
    t.equal(memory, redis, `${trace.trim()}: the Redis script decides exactly as the memory store`)
  }
})
