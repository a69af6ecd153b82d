// prom-client is an optional peer: without it, metrics are off and nothing else changes.
import { spawnSync } from 'node:child_process'
import t from 'tap'

const fixture = (name: string): string => new URL(`./fixtures/${name}`, import.meta.url).pathname

t.test('without prom-client installed', async t => {
  const run = spawnSync(process.execPath, ['--import', fixture('without-prom-client.mjs'), fixture('metrics-app.mjs')], {
    encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 30_000
  })
  t.equal(run.status, 0, run.stderr)
  const result = JSON.parse(run.stdout)
  t.equal(result.status, 200, 'requests are served')
  t.equal(result.limit, '5', 'and limited')
  t.equal(result.metricsStatus, 404, 'no /metrics route without prom-client')
  t.match(result.logs, [/prom-client is not installed/], 'the missing package is said once')
})

t.test('with prom-client installed (control)', async t => {
  const run = spawnSync(process.execPath, [fixture('metrics-app.mjs')], { encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' }, timeout: 30_000 })
  t.equal(run.status, 0, run.stderr)
  t.equal(JSON.parse(run.stdout).metricsStatus, 200)
})
