// The package as a service gets it: packed from a copy of the sources without dist/ (what a fresh
// clone or a git dependency holds, so `prepare` must build it), installed into a separate project,
// then imported, type-checked and run there, bin included.
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import semver from 'semver'
import t from 'tap'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const FIXTURES = fileURLToPath(new URL('fixtures/service/', import.meta.url))
const PACKAGE = '@maestro/rate-limiting'
/** What a clone does not have: build output, installs, local caches. */
const NOT_IN_A_CLONE = new Set(['.git', 'node_modules', 'dist', 'coverage', '.tap', '.redis-data'])

interface Run { stdout: string, stderr: string }

/** Runs a command to completion; rejects with its output when it fails. */
async function run (file: string, args: string[], cwd: string): Promise<Run> {
  // Without the test runner's coverage hooks (NODE_OPTIONS): npm and node run as a user's would.
  const env = { ...process.env, NODE_OPTIONS: undefined }
  return await new Promise((resolve, reject) => {
    execFile(file, args, { cwd, env, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${basename(file)} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`))
      else resolve({ stdout, stderr })
    })
  })
}

/** Every file under a folder, as paths relative to it. */
function filesUnder (dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter(entry => entry.isFile())
    .map(entry => relative(dir, join(entry.parentPath, entry.name)))
}

t.test('packed from a clean copy, installed elsewhere, it imports, type-checks and runs', async t => {
  const started = Date.now()
  const work = mkdtempSync(join(tmpdir(), 'maestro-rl-pack-'))
  t.teardown(() => rmSync(work, { recursive: true, force: true }))

  // 1. A copy of the sources as a clone has them; the dev tools `prepare` needs come from this checkout.
  const source = join(work, 'source')
  cpSync(ROOT, source, {
    recursive: true,
    filter: from => {
      const top = relative(ROOT, from).split(/[\\/]/)[0]
      return !NOT_IN_A_CLONE.has(top) && !top.endsWith('.tsbuildinfo')
    }
  })
  symlinkSync(realpathSync(join(ROOT, 'node_modules')), join(source, 'node_modules'), 'dir')
  t.notOk(existsSync(join(source, 'dist')), 'the copy starts without dist/')

  // 2. npm pack runs `prepare`, which must build dist/ from nothing.
  const tarballs = join(work, 'tarballs')
  mkdirSync(tarballs)
  await run('npm', ['pack', '--pack-destination', tarballs, '--silent'], source)
  const [tarball] = readdirSync(tarballs).filter(name => name.endsWith('.tgz'))
  t.ok(tarball, 'npm pack wrote a tarball')

  // 3. A separate service project installs the tarball; npm adds the peer fastify itself.
  const service = join(work, 'service')
  mkdirSync(service)
  writeFileSync(join(service, 'package.json'), JSON.stringify({ name: 'service', private: true, type: 'module' }))
  await run('npm', ['install', join(tarballs, tarball), '--prefer-offline', '--no-audit', '--no-fund'], service)
  for (const name of readdirSync(FIXTURES)) cpSync(join(FIXTURES, name), join(service, name))

  const installed = join(service, 'node_modules', PACKAGE)
  const shipped = filesUnder(installed)
  for (const file of ['dist/index.js', 'dist/index.d.ts', 'dist/admin.js', 'dist/admin.d.ts', 'dist/cli.js']) {
    t.ok(shipped.includes(file), `ships ${file}`)
  }
  t.ok(shipped.some(file => /^dist[\\/]lua[\\/].+\.lua$/.test(file)), 'ships the Lua scripts beside the JavaScript')
  for (const file of ['index.html', 'console.js', 'console.css']) t.ok(shipped.includes(join('dist', 'console', 'assets', file)), `ships the console's ${file}`)
  t.same(shipped.filter(file => file.endsWith('.png')), [], 'no screenshots (they illustrate the docs in the repository)')
  t.same(shipped.filter(file => file.endsWith('.tsbuildinfo') || /^lib[\\/].*\.ts$/.test(file)), [], 'no build state, no TypeScript sources')
  t.notOk(existsSync(join(service, 'node_modules', '@fastify', 'redis')), '@fastify/redis is the service\'s choice, not installed by the plugin')

  // Every source map carries its sources, since the TypeScript sources are not shipped.
  const mapsWithoutSources = shipped.filter(file => file.endsWith('.map')).filter(file => {
    const map = JSON.parse(readFileSync(join(installed, file), 'utf8')) as { sources: string[], sourcesContent?: Array<string | null> }
    return map.sources.some((name, i) => typeof map.sourcesContent?.[i] !== 'string' && !existsSync(join(installed, dirname(file), name)))
  })
  t.same(mapsWithoutSources, [], 'source maps resolve to sources')

  // 4. Imported from the service: the plugin on the memory store, the admin routes, real requests.
  const { stdout } = await run(process.execPath, ['service.mjs'], service)
  const result = JSON.parse(stdout)
  t.equal(result.store, 'memory')
  t.equal(result.hello.statusCode, 200)
  t.same(result.hello.body, { hello: 'world' })
  t.match(result.hello.headers, { 'x-ratelimit-limit-minute': '5', 'x-ratelimit-remaining-minute': '4' }, 'anonymous tier headers')
  t.equal(result.tiers.statusCode, 200)
  t.match(result.tiers.body, { anonymous: { limits: { requestsPerMinute: 5 } } })
  t.equal(result.refused.statusCode, 401, 'admin routes ask the service\'s authorize hook')
  t.equal(result.console.statusCode, 200, 'the console\'s page, from the installed package')
  t.match(result.console.body, '<script type="module" src="./console.js">')
  t.equal(result.consoleScript.statusCode, 200)
  t.match(result.consoleScript.headers['content-type'], 'text/javascript')

  // 5. Its types, as the service's TypeScript sees them through the exports map (skipLibCheck, as
  //    services usually set it, keeps this to seconds; typed.mts fails if the types turned to `any`).
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
  await run(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022', '--module', 'nodenext',
    '--types', 'node', '--typeRoots', join(ROOT, 'node_modules', '@types'), 'typed.mts'], service)

  // 6. The bin, as npm linked it.
  const help = await run(join(service, 'node_modules', '.bin', 'maestro-rl'), ['--help'], service)
  t.match(help.stdout, /Usage: maestro-rl <command>/)

  // 7. The observability files for a metrics prefix, written from the installed package.
  await run(process.execPath, [join(installed, 'scripts', 'observability-for-prefix.mjs'), 'gateway_', 'observability'], service)
  t.match(readFileSync(join(service, 'observability', 'alerts.yml'), 'utf8'), /gateway_rate_limit_store_errors_total/, 'prefixed alert rules from the package')

  const seconds = (Date.now() - started) / 1000
  t.ok(seconds < 60, `packed, installed and checked in ${seconds.toFixed(1)} s`)
})

t.test('every installed package runs on the Node versions package.json promises', async t => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'))
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8'))
  const runtime: string = pkg.engines.node // where the library runs
  const development: string = pkg.devEngines.runtime.version // where it is built and tested
  t.ok(semver.subset(development, runtime), 'development needs no Node the library does not support')

  const broken: string[] = []
  for (const [path, entry] of Object.entries(lock.packages as Record<string, { version: string, dev?: boolean, engines?: { node?: unknown } }>)) {
    const wants = entry.engines?.node
    if (path === '' || typeof wants !== 'string') continue
    const promised = entry.dev === true ? development : runtime
    if (!semver.subset(promised, wants)) broken.push(`${path}@${entry.version} wants Node ${wants}, package.json promises ${promised}`)
  }
  t.same(broken, [])
})
