// Stock Firefox for the console's browser tests, driven over WebDriver BiDi by puppeteer-core.
// A missing Firefox fails the test rather than skipping it: the console is promised to work there.
import { accessSync, constants } from 'node:fs'
import { createRequire } from 'node:module'
import type { Browser, Page, PuppeteerNode } from 'puppeteer-core'

// Loaded through require: puppeteer's BiDi code imports chromium-bidi by a path its exports map
// resolves only with Node's own resolver, which the test runner's ESM loader does not follow.
const puppeteer = createRequire(import.meta.url)('puppeteer-core') as PuppeteerNode

interface Teardown { teardown (fn: () => unknown): void }

/** The Firefox binary: FIREFOX_PATH, else Debian's firefox-esr. */
export const FIREFOX_PATH = process.env.FIREFOX_PATH ?? '/usr/bin/firefox-esr'

const CLOSE_MS = 5000

/** A headless Firefox, closed when the test ends. */
export async function launchFirefox (t: Teardown): Promise<Browser> {
  try {
    accessSync(FIREFOX_PATH, constants.X_OK)
  } catch {
    throw new Error(`Firefox is required for this test and was not found at ${FIREFOX_PATH}: ` +
      'install it (Debian: apt-get install firefox-esr) or set FIREFOX_PATH to a Firefox binary')
  }
  let browser: Browser
  try {
    browser = await puppeteer.launch({ browser: 'firefox', executablePath: FIREFOX_PATH, headless: true })
  } catch (err) {
    throw new Error(`Firefox at ${FIREFOX_PATH} did not start: ${(err as Error).message}`, { cause: err })
  }
  t.teardown(() => close(browser))
  return browser
}

/** Closes the browser; one that does not answer within a few seconds is killed. */
async function close (browser: Browser): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<'late'>(resolve => { timer = setTimeout(() => resolve('late'), CLOSE_MS) })
  const outcome = await Promise.race([browser.close().catch(() => 'late' as const), late])
  clearTimeout(timer)
  if (outcome === 'late') browser.process()?.kill('SIGKILL')
}

/**
 * What went wrong inside the page, as it happens: console errors, uncaught errors and rejections
 * (Firefox reports Content-Security-Policy refusals among them), and answers of 400 and up, which
 * Firefox, unlike Chromium, does not log as console errors. A 401 is left out: it is the HTTP Basic
 * challenge the browser answers with the operator's credentials. The list is live; a test expects
 * it to stay empty, or takes out the refusals it provoked.
 */
export function pageProblems (page: Page): string[] {
  const problems: string[] = []
  page.on('console', message => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`)
  })
  page.on('pageerror', error => problems.push(`page error: ${String(error)}`))
  page.on('response', response => {
    const status = response.status()
    if (status >= 400 && status !== 401) problems.push(`HTTP ${status} ${response.request().method()} ${response.url()}`)
  })
  return problems
}
