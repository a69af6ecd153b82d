// promtool (Debian package `prometheus`): found on PATH, or installed when we are root with apt.
import { execFileSync, spawnSync } from 'node:child_process'

let cached: string | undefined | null = null

/** The promtool path, or undefined with the reason it cannot be had. */
export function promtool (): { path?: string, reason?: string } {
  if (cached === null) {
    cached = which('promtool')
    if (cached === undefined && process.getuid?.() === 0 && which('apt-get') !== undefined) {
      spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'prometheus'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeout: 240_000 })
      cached = which('promtool')
    }
  }
  return cached === undefined ? { reason: 'promtool is not installed and could not be installed (apt-get install prometheus)' } : { path: cached }
}

function which (command: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${command}`], { encoding: 'utf8' }).trim() || undefined
  } catch {
    return undefined
  }
}

/** Runs promtool with input on stdin; returns exit status and output. */
export function runPromtool (path: string, args: string[], input?: string): { status: number | null, output: string } {
  const result = spawnSync(path, args, { input, encoding: 'utf8', timeout: 60_000 })
  return { status: result.status, output: `${result.stdout}${result.stderr}` }
}
