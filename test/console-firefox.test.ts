// The operator console in stock Firefox (the console is promised for current Chromium and Firefox):
// a real Fastify with the plugin on Redis and the admin routes behind HTTP Basic, real traffic, then
// the page driven over WebDriver BiDi: the tenants table with live numbers, a tenant's resolved
// limits reached through its link, an override saved and a refused one explained at its field, the
// platform page's tiers and store health. Any console error, uncaught error or unexpected
// error answer in the page fails it.
import { timingSafeEqual } from 'node:crypto'
import type { ElementHandle } from 'puppeteer-core'
import t from 'tap'
import rateLimitAdmin, { type AdminOptions } from '../dist/admin.js'
import { buildApp, headerTenant, listen } from './helpers/app.js'
import { launchFirefox, pageProblems } from './helpers/firefox.js'
import { get } from './helpers/http-get.js'

const PREFIX = '/admin/rate-limits'
const OPERATOR = { username: 'operator', password: 'console-test' }
const TIERS = {
  small: { requestsPerMinute: 100, requestsPerHour: 1000, concurrentRequests: 10, monthlyQuota: 20 },
  pro: { requestsPerMinute: 1000, requestsPerHour: 10_000, concurrentRequests: 50, monthlyQuota: 100_000 }
}
/** Hostile on purpose: quote, ampersand, markup, slash, hash and percent, through links and paths. */
const ODD = 'o\'brien & co <b>/eu #1 50%'
const WAIT_MS = 10_000

const basic = 'Basic ' + Buffer.from(`${OPERATOR.username}:${OPERATOR.password}`).toString('base64')
const authorize: AdminOptions['authorize'] = async (request, reply) => {
  const given = Buffer.from(request.headers.authorization ?? '')
  if (given.length === basic.length && timingSafeEqual(given, Buffer.from(basic))) return
  reply.code(401).header('www-authenticate', 'Basic realm="rate-limit console", charset="UTF-8"')
    .send({ statusCode: 401, error: 'Unauthorized', message: 'operators only' })
}

const app = await buildApp(t, {
  kind: 'redis',
  options: { tenantExtractor: headerTenant, tiers: TIERS, defaultTier: 'small', environment: 'staging' }
}, app => {
  app.get('/', async () => ({ ok: true }))
  app.register(rateLimitAdmin, { prefix: PREFIX, authorize })
})
const port = await listen(app)
await app.policies.setEnvironmentMultiplier('staging', 2)

/** `n` requests of a tenant over a real socket, each admitted. */
async function traffic (tenant: string, n: number, tier?: string): Promise<void> {
  for (let i = 0; i < n; i++) {
    const answer = await get(port, '/', { 'x-tenant': tenant, ...(tier === undefined ? {} : { 'x-tier': tier }) })
    if (answer.status !== 200) throw new Error(`request ${i + 1} of ${tenant}: HTTP ${answer.status}`)
  }
}
await traffic('acme', 7)
await traffic('globex', 3, 'pro')
await traffic(ODD, 2)

const browser = await launchFirefox(t)
const page = await browser.newPage()
page.setDefaultTimeout(WAIT_MS)
const problems = pageProblems(page)
await page.authenticate(OPERATOR)

// ---- reading the page by roles, labels and text ----

type Row = Record<string, string>

/** The rows of the table inside the region of that name, keyed by column header (sort arrows left out). */
async function tableRows (name: string): Promise<Row[]> {
  const region = await page.$(`aria/${name}[role="region"]`)
  if (region === null) return []
  return await region.evaluate(element => {
    const table = element.querySelector('table')
    if (table === null || table.tHead === null) return []
    const text = (cell: Element): string => (cell.textContent ?? '').replace(/[▲▼]/g, '').replace(/\s+/g, ' ').trim()
    const headers = [...table.tHead.rows[0].cells].map(text)
    return [...table.tBodies].flatMap(body => [...body.rows]).map(row =>
      Object.fromEntries([...row.cells].map((cell, i) => [headers[i], text(cell)])))
  }).catch(() => []) // redrawn between the query and the read: read again
}

/** The term → details pairs of the description lists inside the region of that name. */
async function facts (name: string): Promise<Row> {
  const region = await page.$(`aria/${name}[role="region"]`)
  if (region === null) return {}
  return await region.evaluate(element => Object.fromEntries([...element.querySelectorAll('dt')].map(term =>
    [(term.textContent ?? '').trim(), (term.nextElementSibling?.textContent ?? '').replace(/\s+/g, ' ').trim()])))
    .catch(() => ({}))
}

/** Reads until `accept` holds or the deadline passes; the last read either way. */
async function until<T> (read: () => Promise<T>, accept: (value: T) => boolean, ms = WAIT_MS): Promise<T> {
  const deadline = Date.now() + ms
  let value = await read()
  while (!accept(value) && Date.now() < deadline) {
    await new Promise(resolve => setTimeout(resolve, 50))
    value = await read()
  }
  return value
}

const rowOf = (rows: Row[], column: string, value: string): Row | undefined => rows.find(row => row[column] === value)

/** An input's value, its invalid mark, whether it has focus, and the visible texts that describe it. */
async function fieldState (input: ElementHandle<Element>): Promise<{ value: string, invalid: string | null, focused: boolean, described: string[] }> {
  return await input.evaluate(element => ({
    value: (element as HTMLInputElement).value,
    invalid: element.getAttribute('aria-invalid'),
    focused: document.activeElement === element,
    described: (element.getAttribute('aria-describedby') ?? '').split(/\s+/).filter(Boolean)
      .map(id => document.getElementById(id))
      .filter((node): node is HTMLElement => node !== null && node.checkVisibility())
      .map(node => (node.textContent ?? '').trim())
  }))
}

/** A form's input found by its label (its accessible name), once it is on the page. */
async function labelled (label: string, role = 'textbox'): Promise<ElementHandle<Element>> {
  return await page.locator(`aria/${label}[role="${role}"]`).waitHandle()
}

/** The page's route. */
async function currentHash (): Promise<string> {
  return await page.evaluate(() => location.hash)
}

// ---- the pages ----

t.test('the tenants page lists each tenant with its live numbers', async t => {
  const response = await page.goto(`http://127.0.0.1:${port}${PREFIX}/ui/`)
  t.equal(response?.status(), 200, 'the page, once signed in')
  await page.locator('aria/Tenants[role="heading"]').wait()

  const acmeLive = (used: number) => ({ Tenant: 'acme', Tier: 'small', 'Month used': `${used} / 40`, Minute: `${used} / 200`, Hour: `${used} / 2,000`, 'In flight': '0 / 20' })
  let rows = await until(() => tableRows('Tenants table'), rows => rows.length === 3 && rowOf(rows, 'Tenant', 'acme')?.Minute === '7 / 200')
  t.same(rows.map(row => row.Tenant), ['acme', ODD, 'globex'], 'by share of the quota, highest first; the odd id as text')
  t.match(rowOf(rows, 'Tenant', 'acme'), { ...acmeLive(7), Share: '17.5 %' }, 'tier limits × the staging multiplier')
  t.match(rowOf(rows, 'Tenant', 'globex'), { Tier: 'pro', 'Month used': '3 / 200,000', Share: '0.0 %', Minute: '3 / 2,000', Hour: '3 / 20,000', 'In flight': '0 / 100' })
  t.match(rowOf(rows, 'Tenant', ODD), { Tier: 'small', 'Month used': '2 / 40', Share: '5.0 %' })

  await traffic('acme', 2)
  rows = await until(() => tableRows('Tenants table'), rows => rowOf(rows, 'Tenant', 'acme')?.Minute === '9 / 200')
  t.match(rowOf(rows, 'Tenant', 'acme'), { ...acmeLive(9), Share: '22.5 %' }, 'the rows refresh by themselves')
  t.same(problems, [], 'no console error or page error')
})

t.test('a tenant\'s link opens its page with its resolved limits', async t => {
  await page.locator(`aria/${ODD}[role="link"]`).click()
  await page.locator(`aria/Tenant ${ODD}[role="heading"]`).wait()
  t.equal(await currentHash(), '#/tenants/' + encodeURIComponent(ODD), 'the id as one encoded segment of the hash')

  const limits = await until(() => tableRows('Limits'), rows => rows.length === 4)
  t.match(rowOf(limits, 'Limit', 'Requests per minute'), { 'Tier value': '100', Override: '—', Multiplier: '× 2', Effective: '200', Source: 'tier' })
  t.match(rowOf(limits, 'Limit', 'Requests per hour'), { 'Tier value': '1,000', Effective: '2,000', Source: 'tier' })
  t.match(rowOf(limits, 'Limit', 'Concurrent requests'), { 'Tier value': '10', Effective: '20', Source: 'tier' })
  t.match(rowOf(limits, 'Limit', 'Monthly quota'), { 'Tier value': '20', Effective: '40', Source: 'tier' })
  const usage = await until(() => tableRows('Usage'), rows => rows.length > 0)
  t.match(rowOf(usage, 'Window', 'Minute'), { 'Used / limit': '2 / 200', Remaining: '198' }, 'its live usage')
  t.same(problems, [], 'no console error or page error')
})

t.test('an override is stored through the form; a refused one is explained at its field', async t => {
  const minute = await labelled('Requests per minute')
  await minute.type('250')
  await (await labelled('Monthly quota')).type('unlimited')
  await page.locator('aria/Save override[role="button"]').click()
  const stored = await until(() => app.policies.getTenantOverride(ODD), override => override !== null)
  t.same(stored, { requestsPerMinute: 250, monthlyQuota: null, expiresAt: null }, 'stored as typed')
  await page.locator('::-p-text(Override saved.)').wait()
  const limits = await until(() => tableRows('Limits'), rows => rowOf(rows, 'Limit', 'Requests per minute')?.Source === 'override')
  t.match(rowOf(limits, 'Limit', 'Requests per minute'), { 'Tier value': '100', Override: '250', Multiplier: '× 2', Effective: '500', Source: 'override' })
  t.match(rowOf(limits, 'Limit', 'Monthly quota'), { Override: 'unlimited', Effective: 'unlimited', Source: 'override' })

  // The page sends what was typed and shows the server's own message for it.
  const hour = await labelled('Requests per hour')
  await hour.type('-5')
  const refusal = await app.inject({
    method: 'PUT',
    url: `${PREFIX}/tenants/${encodeURIComponent(ODD)}/override`,
    headers: { authorization: basic },
    payload: { requestsPerMinute: 250, requestsPerHour: -5, monthlyQuota: null }
  })
  t.equal(refusal.statusCode, 400)
  const { message, field } = refusal.json()
  t.equal(field, 'requestsPerHour', 'the server names the field at fault')
  await page.locator('aria/Save override[role="button"]').click()
  const state = await until(() => fieldState(hour), state => state.invalid === 'true')
  t.match(state, { value: '-5', invalid: 'true', focused: true }, 'the field at fault is marked and focused')
  t.ok(state.described.includes(message), `its description carries the server's message (${message})`)
  t.same(await app.policies.getTenantOverride(ODD), stored, 'the stored override is unchanged')
  const overrideUrl = `http://127.0.0.1:${port}${PREFIX}/tenants/${encodeURIComponent(ODD)}/override`
  t.same(problems.splice(0), [`HTTP 400 PUT ${overrideUrl}`], 'the one refusal provoked, no console error or page error')
})

t.test('the platform page shows the tiers and the store\'s health', async t => {
  await page.locator('aria/Platform[role="link"]').click()
  await page.locator('aria/Platform[role="heading"]').wait()
  t.equal(await currentHash(), '#/platform')

  const tiers = await until(() => tableRows('Tiers'), rows => rowOf(rows, 'Tier', 'pro') !== undefined)
  t.match(rowOf(tiers, 'Tier', 'small'), { 'Per minute': '100', 'Per hour': '1,000', Concurrent: '10', 'Monthly quota': '20', Source: 'configured' })
  t.match(rowOf(tiers, 'Tier', 'pro'), { 'Per minute': '1,000', 'Per hour': '10,000', Concurrent: '50', 'Monthly quota': '100,000', Source: 'configured' })

  const health = await until(() => facts('Store health'), health => health.Store !== undefined)
  t.match(health, { Store: 'redis ok', Reachable: 'yes', Ping: /^[\d.]+ ms$/, 'Circuit breaker': 'closed', 'Local fallback': 'not in use' })
  t.same(problems, [], 'no console error or page error')
})
