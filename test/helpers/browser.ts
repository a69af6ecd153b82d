// A real headless Chromium for the console's tests (Debian's chromium, or CHROMIUM_PATH), driven by
// playwright-core. A missing browser fails the test: the console is only tested in a browser.
import { existsSync } from 'node:fs'
import { chromium, type Browser, type Page } from 'playwright-core'

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

interface Teardown { teardown (fn: () => unknown): void }

/** Launches Chromium; closed when the test ends. */
export async function launchBrowser (t: Teardown): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: install it (apt-get install chromium) or set CHROMIUM_PATH to a Chromium or Chrome binary`)
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: ['--no-sandbox'] })
  t.teardown(() => browser.close())
  return browser
}

/**
 * What went wrong on a page while the test drove it: uncaught errors, Content-Security-Policy
 * refusals (the page must need no inline script or style) and dialogs (an alert() is a script that
 * should never have run).
 */
export interface PageProblems { errors: string[], csp: string[], dialogs: string[] }

export function watchPage (page: Page): PageProblems {
  const problems: PageProblems = { errors: [], csp: [], dialogs: [] }
  page.on('pageerror', err => problems.errors.push(err.message))
  page.on('console', message => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) problems.csp.push(message.text())
  })
  page.on('dialog', dialog => {
    problems.dialogs.push(`${dialog.type()}: ${dialog.message()}`)
    dialog.dismiss().catch(() => {})
  })
  return problems
}
