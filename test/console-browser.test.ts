// The operator console in a real Chromium: two instances on one Redis, the admin plugin behind HTTP
// Basic. The page signs in through authorize, shows live numbers from real traffic, and what its
// forms change is what the OTHER instance enforces on the next request.
import { Buffer } from 'node:buffer'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify, { type FastifyInstance } from 'fastify'
import type { Browser, Locator, Page } from 'playwright-core'
import t, { type Test } from 'tap'
import rateLimitAdmin, { type AdminOptions } from '../dist/admin.js'
import rateLimiting from '../dist/index.js'
import { headerTenant, listen } from './helpers/app.js'
import { launchBrowser, watchPage, type PageProblems } from './helpers/browser.js'
import { get } from './helpers/http-get.js'
import { sharedRedis, uniquePrefix } from './helpers/redis.js'

const ADMIN = '/admin/rate-limits'
const USER = 'operator'
const PASSWORD = 'correct horse'
const BASIC = 'Basic ' + Buffer.from(`${USER}:${PASSWORD}`).toString('base64')
const HOSTILE = '<img src=x onerror=alert(1)>'
const LONG = 'long-' + 'x'.repeat(300)

/** Set by a test: the service failing (500), or the operator's session gone (401) after sign-in. */
let outage: 'failing' | 'signed out' | undefined

/** The service's check: HTTP Basic, answered with a challenge when missing or wrong. */
const authorize: AdminOptions['authorize'] = (request, reply) => {
  if (outage === 'failing') throw new Error('session store unreachable')
  if (outage === 'signed out') {
    reply.code(401).send({ statusCode: 401, error: 'Unauthorized', message: 'session expired' })
    return
  }
  if (request.headers.authorization === BASIC) return
  reply.code(401).header('www-authenticate', 'Basic realm="rate limits", charset="UTF-8"')
    .send({ statusCode: 401, error: 'Unauthorized', message: 'operator credentials required' })
}

interface Instance { app: FastifyInstance, port: number }

async function instance (keyPrefix: string): Promise<Instance> {
  // Tenant ids reach the admin routes as a path parameter: Fastify refuses parameters longer than
  // maxParamLength (100 by default) before any route runs, so a service with long ids raises it.
  const app = Fastify({ routerOptions: { maxParamLength: 4096 } })
  t.teardown(() => app.close())
  await app.register(rateLimiting, { redis: sharedRedis(t), keyPrefix, tenantExtractor: headerTenant })
  app.get('/api', async () => ({ ok: true }))
  await app.register(rateLimitAdmin, { prefix: ADMIN, authorize })
  return { app, port: await listen(app) }
}

let a: Instance // serves the console
let b: Instance // the other instance: it must follow what the console changed
let browser: Browser
let consoleUrl: string

const as = (tenantId: string, tier = 'starter'): Record<string, string> => ({ 'x-tenant': tenantId, 'x-tier': tier })

async function send (port: number, tenantId: string, n: number, tier = 'starter'): Promise<void> {
  for (let i = 0; i < n; i++) {
    const { status } = await get(port, '/api', as(tenantId, tier))
    if (status !== 200) throw new Error(`${tenantId}'s request answered ${status}`)
  }
}

/** An admin call with the operator's credentials, straight over HTTP. */
async function adminCall (method: string, path: string, body?: unknown): Promise<{ status: number, json: any }> {
  const headers: Record<string, string> = { authorization: BASIC }
  if (body !== undefined) headers['content-type'] = 'application/json'
  const response = await fetch(`http://127.0.0.1:${a.port}${ADMIN}/${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) })
  const text = await response.text()
  return { status: response.status, json: text === '' ? null : JSON.parse(text) }
}

/** Polls until `check` answers something truthy; fails with `what` at the deadline. */
async function eventually<T> (what: string, check: () => Promise<T>, ms = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== null && value !== false) return value as NonNullable<T>
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`)
    await sleep(50)
  }
}

/** A signed-in browser tab on the console (closed with the test). */
async function openConsole (t: Test, hash = '#/tenants', viewport = { width: 1280, height: 800 }): Promise<{ page: Page, problems: PageProblems }> {
  const context = await browser.newContext({ httpCredentials: { username: USER, password: PASSWORD }, viewport })
  t.teardown(() => context.close())
  const page = await context.newPage()
  page.setDefaultTimeout(10_000)
  const problems = watchPage(page)
  const response = await page.goto(consoleUrl + hash)
  t.equal(response?.status(), 200, 'the page is served')
  await page.locator('h1').waitFor()
  return { page, problems }
}

/** Nothing went wrong on the page: no script error, no CSP refusal, no dialog. */
function clean (t: Test, problems: PageProblems): void {
  t.same(problems, { errors: [], csp: [], dialogs: [] }, 'no script error, CSP refusal or dialog')
}

/** The row of a tenant in the table, found by its link's exact text. */
const rowOf = (page: Page, tenantId: string): Locator =>
  page.locator('tbody tr').filter({ has: page.getByRole('link', { name: tenantId, exact: true }) })

const COLUMNS = { tier: 0, month: 1, share: 2, minute: 3, hour: 4, inFlight: 5, flags: 6 }
const cell = async (row: Locator, column: keyof typeof COLUMNS): Promise<string> =>
  ((await row.locator('td').nth(COLUMNS[column]).textContent()) ?? '').trim()

/** The tenant ids of the table, top to bottom. */
const shownIds = async (page: Page): Promise<string[]> => await page.locator('tbody th a').allTextContents()

t.before(async () => {
  const keyPrefix = uniquePrefix(t, sharedRedis(t))
  a = await instance(keyPrefix)
  b = await instance(keyPrefix)
  browser = await launchBrowser(t)
  consoleUrl = `http://127.0.0.1:${a.port}${ADMIN}/ui/`
  // Every tenant's traffic comes first: the table's rows come from an index built on its first read.
  await send(a.port, 'acme', 3)
  await send(b.port, 'Acme-Labs', 1)
  await send(a.port, 'globex', 6, 'professional')
  await send(b.port, 'initech', 2)
  await send(a.port, HOSTILE, 1)
  await send(b.port, LONG, 1)
})

t.test('only through authorize: without credentials nothing of the console; with them, the console', async t => {
  for (const path of ['ui', 'ui/', 'ui/index.html', 'ui/console.js', 'ui/console.css', 'ui/api.js', 'tenants']) {
    const refused = await get(a.port, `${ADMIN}/${path}`)
    t.equal(refused.status, 401, `${path} refused`)
    t.match(refused.headers['www-authenticate'], /^Basic realm="rate limits"/, `${path} asks for credentials`)
  }
  const wrong = await get(a.port, `${ADMIN}/ui/`, { authorization: 'Basic ' + Buffer.from(`${USER}:guess`).toString('base64') })
  t.equal(wrong.status, 401, 'a wrong password is refused')

  // A browser without credentials, then with wrong ones: Chromium gives up on the challenge.
  for (const httpCredentials of [undefined, { username: USER, password: 'guess' }]) {
    const refused = await browser.newContext(httpCredentials === undefined ? {} : { httpCredentials })
    t.teardown(() => refused.close())
    const page = await refused.newPage()
    const answers: Array<[string, number]> = []
    page.on('response', response => { answers.push([new URL(response.url()).pathname, response.status()]) })
    await page.goto(consoleUrl).catch(() => {}) // net::ERR_INVALID_AUTH_CREDENTIALS, or the 401 shown
    const label = httpCredentials === undefined ? 'no credentials' : 'a wrong password'
    t.ok(answers.length > 0 && answers.every(([path, status]) => path === `${ADMIN}/ui/` && status === 401),
      `${label}: the page answered 401 and nothing else asked for (${JSON.stringify(answers)})`)
    t.equal(await page.locator('h1, nav, table, form').count(), 0, `${label}: no console content`)
    t.notMatch(await page.locator('body').innerText().catch(() => ''), /Tenants|Platform/, `${label}: not a word of it`)
  }

  const { page: signedIn, problems } = await openConsole(t)
  t.equal(await signedIn.locator('h1').textContent(), 'Tenants')
  t.equal(await signedIn.getByRole('link', { name: 'Tenants', exact: true }).getAttribute('aria-current'), 'page')
  await eventually('rows from the server', async () => (await rowOf(signedIn, 'acme').count()) === 1)
  t.equal(await signedIn.locator('#refused').isHidden(), true, 'no "not authorized" banner')
  clean(t, problems)
})

t.test('the tenants table shows real traffic; a number changes on the next refresh, without a reload', async t => {
  const { page, problems } = await openConsole(t)
  const acme = rowOf(page, 'acme')
  await acme.waitFor()
  t.equal(await cell(acme, 'tier'), 'starter')
  t.equal(await cell(acme, 'month'), '3 / 10,000')
  t.equal(await cell(acme, 'minute'), '3 / 10')
  t.equal(await cell(acme, 'hour'), '3 / 100')
  t.equal(await cell(acme, 'inFlight'), '0 / 10')
  t.equal(await acme.locator('meter').getAttribute('value'), '3', 'the month as a meter')
  const globex = rowOf(page, 'globex')
  t.equal(await cell(globex, 'tier'), 'professional')
  t.equal(await cell(globex, 'minute'), '6 / 50')
  t.equal(await cell(globex, 'month'), '6 / 100,000')
  t.match(await page.locator('p.meta').textContent(), /^Updated \d\d:\d\d:\d\d · order and total from the index of \d\d:\d\d:\d\d/)
  t.match(await page.locator('.range').textContent(), /^1–6 of 6$/)

  await page.evaluate(() => { (window as unknown as { sameDocument: boolean }).sameDocument = true })
  await send(b.port, 'acme', 2) // through the other instance
  await eventually('acme at 5 this minute', async () => (await cell(acme, 'minute')) === '5 / 10')
  t.equal(await cell(acme, 'month'), '5 / 10,000')
  t.equal(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument), true, 'the same document: no reload')
  clean(t, problems)
})

t.test('a hidden tab reads nothing; shown again, it reads at once', async t => {
  const { page, problems } = await openConsole(t)
  await rowOf(page, 'acme').waitFor()
  const reads: number[] = []
  page.on('request', request => { if (new URL(request.url()).pathname === `${ADMIN}/tenants`) reads.push(Date.now()) })
  const setHidden = async (hidden: boolean): Promise<void> => await page.evaluate(hidden => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => hidden })
    document.dispatchEvent(new Event('visibilitychange'))
  }, hidden)
  await setHidden(true)
  const hiddenAt = Date.now()
  await eventually('more than a refresh period hidden', async () => Date.now() - hiddenAt > 4000, 5000)
  t.same(reads.filter(at => at > hiddenAt + 500), [], 'no read while hidden (one under way may end)')
  const shownAt = Date.now()
  await setHidden(false)
  await eventually('a read as soon as it is shown', async () => reads.some(at => at >= shownAt), 1500)
  clean(t, problems)
})

t.test('search and sort: the rows, the column headers and the hash follow; a reload keeps them', async t => {
  const { page, problems } = await openConsole(t)
  await rowOf(page, 'globex').waitFor()
  await page.getByLabel('Search tenants').fill('ACME')
  await eventually('only the acme tenants', async () => JSON.stringify((await shownIds(page)).sort()) === JSON.stringify(['Acme-Labs', 'acme']))
  t.match(await page.evaluate(() => location.hash), /^#\/tenants\?search=ACME$/)
  t.equal(await page.locator('.range').textContent(), '1–2 of 2')

  await page.getByRole('button', { name: 'Tenant', exact: true }).click()
  const tenantHeader = page.locator('th', { has: page.getByRole('button', { name: 'Tenant', exact: true }) })
  await eventually('sorted by tenant, ascending', async () => (await tenantHeader.getAttribute('aria-sort')) === 'ascending')
  t.equal(await page.locator('th', { has: page.getByRole('button', { name: 'Share' }) }).getAttribute('aria-sort'), 'none')
  const expected = (await adminCall('GET', 'tenants?search=ACME&sort=tenantId&order=asc')).json.rows.map((r: { tenantId: string }) => r.tenantId)
  await eventually('the server\'s ascending order', async () => JSON.stringify(await shownIds(page)) === JSON.stringify(expected))
  await page.getByRole('button', { name: 'Tenant', exact: true }).click()
  await eventually('descending', async () => (await tenantHeader.getAttribute('aria-sort')) === 'descending')
  await eventually('the reverse order', async () => JSON.stringify(await shownIds(page)) === JSON.stringify([...expected].reverse()))
  t.equal(await page.evaluate(() => location.hash), '#/tenants?search=ACME&sort=tenantId&order=desc')

  await page.reload()
  await eventually('the same rows after a reload', async () => JSON.stringify(await shownIds(page)) === JSON.stringify([...expected].reverse()))
  t.equal(await page.getByLabel('Search tenants').inputValue(), 'ACME')
  t.equal(await tenantHeader.getAttribute('aria-sort'), 'descending')

  await page.getByLabel('Search tenants').fill('')
  await eventually('every tenant again', async () => (await shownIds(page)).length === 6)
  clean(t, problems)
})

t.test('by keyboard: the search, a sort button, a row link kept focused across refreshes, the tenant page', async t => {
  const { page, problems } = await openConsole(t)
  await rowOf(page, 'globex').waitFor()
  const focusedKey = async (): Promise<string | undefined> => await page.evaluate(() => {
    const active = document.activeElement as HTMLElement | null
    return active?.id !== '' && active?.id !== undefined ? '#' + active.id : active?.dataset.key
  })
  const tabTo = async (key: string): Promise<void> => {
    for (let presses = 0; presses < 20; presses++) {
      await page.keyboard.press('Tab')
      if (await focusedKey() === key) return
    }
    throw new Error(`Tab never reached ${key}`)
  }

  await tabTo('#tenant-search')
  await page.keyboard.type('glo')
  await eventually('globex alone', async () => JSON.stringify(await shownIds(page)) === '["globex"]')

  await tabTo('sort:used')
  const usedHeader = page.locator('th', { has: page.getByRole('button', { name: 'Month used' }) })
  t.equal(await usedHeader.getAttribute('aria-sort'), 'none')
  await page.keyboard.press('Enter')
  await eventually('sorted by month used, descending', async () => (await usedHeader.getAttribute('aria-sort')) === 'descending')
  t.equal(await focusedKey(), 'sort:used', 'the button keeps focus')
  await page.keyboard.press('Space')
  await eventually('ascending on Space', async () => (await usedHeader.getAttribute('aria-sort')) === 'ascending')
  t.equal(await focusedKey(), 'sort:used')

  await tabTo('tenant:globex')
  const globex = rowOf(page, 'globex')
  const minute = await cell(globex, 'minute')
  await send(b.port, 'globex', 1, 'professional')
  await eventually('the row redrawn with a new count', async () => (await cell(globex, 'minute')) !== minute)
  t.equal(await focusedKey(), 'tenant:globex', 'focus stays on the row link across a live refresh')
  await page.keyboard.press('Enter')
  await eventually('the tenant page', async () => (await page.evaluate(() => location.hash)) === '#/tenants/globex')
  await eventually('focus on its title', async () => await page.evaluate(() => document.activeElement?.tagName === 'H1'))
  t.equal((await page.locator('h1').textContent())?.trim(), 'Tenant globex')
  clean(t, problems)
})

t.test('an override set in the form is what the other instance enforces next', async t => {
  const before = await get(b.port, '/api', as('globex', 'professional'))
  t.equal(before.headers['x-ratelimit-limit-minute'], '50', 'the professional tier first')

  const { page, problems } = await openConsole(t, '#/tenants/globex')
  const form = page.locator('form', { has: page.getByRole('button', { name: 'Save override' }) })
  await page.locator('#override-requestsPerMinute').fill('7')
  await page.getByRole('button', { name: 'Save override' }).click()
  await eventually('the success status', async () => (await form.getByRole('status').textContent()) === 'Override saved.')

  const seen = await eventually('instance b holding 7 a minute', async () => {
    const answer = await get(b.port, '/api', as('globex', 'professional'))
    return answer.headers['x-ratelimit-limit-minute'] === '7' ? answer : undefined
  })
  t.equal(seen.headers['x-ratelimit-limit-hour'], '1000', 'the other limits stay the tier\'s')
  t.same((await adminCall('GET', 'tenants/globex/override')).json, { requestsPerMinute: 7, expiresAt: null })

  const perMinute = page.locator('tbody tr', { has: page.locator('th', { hasText: 'Requests per minute' }) })
  await eventually('the limits table shows it', async () =>
    JSON.stringify(await perMinute.locator('td').allTextContents()) === JSON.stringify(['50', '7', '× 1', '7', 'override']))
  t.equal(await page.getByRole('button', { name: 'Remove override' }).isVisible(), true)
  clean(t, problems)
})

t.test('a refused value: the server\'s message beside that field, nothing stored', async t => {
  const { page, problems } = await openConsole(t, '#/tenants/acme')
  const input = page.locator('#override-requestsPerMinute')
  const error = page.locator('#override-requestsPerMinute-error')
  const save = page.getByRole('button', { name: 'Save override' })

  for (const typed of ['-5', 'abc']) {
    const server = await adminCall('PUT', 'tenants/acme/override', { requestsPerMinute: typed === '-5' ? -5 : typed })
    t.equal(server.status, 400)
    t.equal(server.json.field, 'requestsPerMinute', 'the server names the field')
    await input.fill(typed)
    await save.click()
    await eventually(`the message for ${typed}`, async () => (await error.isVisible()) && (await error.textContent()) === server.json.message)
    t.equal(await input.getAttribute('aria-invalid'), 'true')
    t.match(await input.getAttribute('aria-describedby'), /(^| )override-requestsPerMinute-error$/)
    t.equal(await input.evaluate(element => element === document.activeElement), true, 'focus on the field at fault')
    t.equal(await page.getByRole('alert').filter({ hasText: /\S/ }).count(), 0, 'no form-level alert: the field says it')
    t.equal((await adminCall('GET', 'tenants/acme/override')).status, 404, `nothing stored for ${typed}`)
  }
  t.equal((await get(b.port, '/api', as('acme'))).headers['x-ratelimit-limit-minute'], '10', 'the other instance holds the tier')

  await input.fill('12')
  await save.click()
  const form = page.locator('form', { has: save })
  await eventually('saved', async () => (await form.getByRole('status').textContent()) === 'Override saved.')
  t.equal(await input.getAttribute('aria-invalid'), null, 'the field is no longer marked')
  t.equal(await error.isHidden(), true)
  t.same((await adminCall('GET', 'tenants/acme/override')).json, { requestsPerMinute: 12, expiresAt: null })

  await page.getByRole('button', { name: 'Remove override' }).click()
  await eventually('removed', async () => (await form.getByRole('status').textContent()) === 'Override removed.')
  t.equal((await adminCall('GET', 'tenants/acme/override')).status, 404)
  clean(t, problems)
})

t.test('block and unblock from the form: the other instance refuses the tenant with 403, then admits it', async t => {
  t.equal((await get(b.port, '/api', as('initech'))).status, 200)
  const { page, problems } = await openConsole(t, '#/tenants/initech')
  const form = page.locator('form', { has: page.locator('legend', { hasText: /^Block$/ }) })
  await page.getByLabel('Reason').fill('card testing')
  await page.getByRole('button', { name: 'Block', exact: true }).click()
  await eventually('blocked status', async () => /^Tenant blocked/.test((await form.getByRole('status').textContent()) ?? ''))

  const refused = await eventually('instance b refusing initech', async () => {
    const answer = await get(b.port, '/api', as('initech'))
    return answer.status === 403 ? answer : undefined
  })
  t.equal(refused.headers['x-ratelimit-error'], 'blocked')
  const body = await (await fetch(`http://127.0.0.1:${b.port}/api`, { headers: as('initech') })).json()
  t.match(body, { statusCode: 403, code: 'FST_MAESTRO_RL_BLOCKED', message: 'card testing' }, 'the reason typed is the refusal\'s message')
  await eventually('the page says so', async () => (await form.locator('.state').textContent()) === 'Blocked: card testing.')

  await page.getByRole('button', { name: 'Unblock' }).click()
  await eventually('unblocked status', async () => (await form.getByRole('status').textContent()) === 'Tenant unblocked.')
  await eventually('instance b admitting initech again', async () => (await get(b.port, '/api', as('initech'))).status === 200)
  await eventually('the page says so', async () => (await form.locator('.state').textContent()) === 'Not blocked.')
  clean(t, problems)
})

t.test('a hostile tenant id is text everywhere: in the table, the link, the title', async t => {
  const { page, problems } = await openConsole(t)
  await page.getByLabel('Search tenants').fill('<img')
  await eventually('the hostile row alone', async () => JSON.stringify(await shownIds(page)) === JSON.stringify([HOSTILE]))
  t.equal(await page.locator('img').count(), 0, 'no image element made of it')
  await page.getByRole('link', { name: HOSTILE, exact: true }).click()
  await eventually('its page', async () => (await page.evaluate(() => location.hash)) === '#/tenants/' + encodeURIComponent(HOSTILE))
  await eventually('its title, as text', async () => (await page.locator('h1').textContent()) === 'Tenant ' + HOSTILE)
  const minute = page.locator('tbody tr', { has: page.locator('th', { hasText: /^Minute$/ }) })
  await eventually('its usage, read through the encoded path', async () => /^1 \/ 10$/.test(((await minute.locator('td').first().textContent()) ?? '').trim()))
  t.equal(await page.locator('img').count(), 0)
  t.equal(await page.title(), `Tenant ${HOSTILE} · Rate limits`)
  clean(t, problems)
})

t.test('a narrow window (400 × 800): no horizontal page scroll on any page', async t => {
  const { page, problems } = await openConsole(t, '#/tenants', { width: 400, height: 800 })
  const overflow = async (): Promise<number> => await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
  await rowOf(page, LONG).waitFor()
  t.equal(await overflow(), 0, 'tenants')
  await page.evaluate(id => { location.hash = '#/tenants/' + encodeURIComponent(id) }, LONG)
  await eventually('the long tenant\'s usage', async () => (await page.locator('tbody tr').count()) > 4)
  t.equal(await overflow(), 0, 'a tenant with a 305-character id')
  await page.getByRole('link', { name: 'Platform' }).click()
  await eventually('the platform page', async () => (await page.locator('h1').textContent()) === 'Platform')
  await page.locator('section table').first().waitFor()
  t.equal(await overflow(), 0, 'platform')
  clean(t, problems)
})

t.test('a failing server: a banner until calls work again; a call refused: "not authorized"', async t => {
  t.teardown(() => { outage = undefined })
  const { page, problems } = await openConsole(t, '#/platform')
  await page.locator('section table').first().waitFor()
  const trouble = page.locator('#trouble')
  const refused = page.locator('#refused')

  // A tab shown again reads at once: that starts each step below without waiting for the timer,
  // except the one that checks the timer itself.
  const readNow = async (): Promise<void> => await page.evaluate(() => { document.dispatchEvent(new Event('visibilitychange')) })

  outage = 'failing'
  await readNow()
  await eventually('the trouble banner', async () => await trouble.isVisible())
  t.match(await trouble.textContent(), /HTTP 500/)
  t.equal(await page.locator('h1').isVisible(), true, 'the last data stays on screen')
  outage = undefined
  await eventually('the banner gone once calls work', async () => await trouble.isHidden())

  outage = 'signed out'
  await readNow()
  await eventually('"not authorized"', async () => await refused.isVisible())
  t.match(await refused.textContent(), /^Not authorized\. .*HTTP 401/)
  t.equal(await page.locator('#page').isHidden(), true, 'no stale data under it')
  outage = undefined
  await readNow()
  await eventually('the page back once calls are allowed again', async () => await refused.isHidden() && await page.locator('#page').isVisible())
  clean(t, problems)
})

t.test('a tenant new to the month appears in the open table, without a reload', async t => {
  const { page, problems } = await openConsole(t, '#/tenants?search=newcomer')
  await eventually('the empty search', async () => (await page.locator('.range').textContent())?.includes('0') === true || (await shownIds(page)).length === 0)
  t.same(await shownIds(page), [], 'nobody by that name yet')
  await page.evaluate(() => { (window as unknown as { sameDocument: boolean }).sameDocument = true })
  await send(b.port, 'newcomer', 2) // first seen by the other instance
  // The index of a few tenants builds in milliseconds, so it is rebuilt every 2 s while watched.
  await eventually('the newcomer\'s row', async () => JSON.stringify(await shownIds(page)) === '["newcomer"]', 15_000)
  t.equal(await cell(rowOf(page, 'newcomer'), 'minute'), '2 / 10')
  t.equal(await page.evaluate(() => (window as unknown as { sameDocument?: boolean }).sameDocument), true, 'the same document: no reload')
  clean(t, problems)
})
