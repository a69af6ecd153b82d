// Tenants (#/tenants): every tenant active this month, searchable, sortable and paged, its numbers
// live. The search, sort and page are kept in the hash, so a reload or a shared link keeps them.
import { api } from './api.js'
import { badge, clock, count, h, limitText, problemLine, renderIfChanged, share, tenantLink, usageBar } from './dom.js'
import { every } from './live.js'

const REFRESH_MS = 3000
const SEARCH_DELAY_MS = 250

/** The sortable columns; a first click sorts names up and amounts down. */
const SORTS = {
  tenantId: { label: 'Tenant', first: 'asc' },
  tier: { label: 'Tier', first: 'asc' },
  used: { label: 'Month used', first: 'desc' },
  share: { label: 'Share', first: 'desc' }
}
const DEFAULTS = { search: '', sort: 'share', order: 'desc', offset: 0, limit: 50 }

/** The table's state read from the hash's query; anything unreadable takes its default. */
function stateFrom (query) {
  const sort = query.get('sort')
  const order = query.get('order')
  const offset = Number(query.get('offset'))
  const limit = Number(query.get('limit'))
  return {
    search: query.get('search') ?? DEFAULTS.search,
    sort: Object.hasOwn(SORTS, sort ?? '') ? sort : DEFAULTS.sort,
    order: order === 'asc' || order === 'desc' ? order : DEFAULTS.order,
    offset: Number.isInteger(offset) && offset > 0 ? offset : DEFAULTS.offset,
    limit: Number.isInteger(limit) && limit >= 1 && limit <= 200 ? limit : DEFAULTS.limit
  }
}

/** The state as a query: what differs from the defaults (a sort with its order, always). */
function queryOf (state) {
  const query = new URLSearchParams()
  if (state.search !== DEFAULTS.search) query.set('search', state.search)
  if (state.sort !== DEFAULTS.sort || state.order !== DEFAULTS.order) {
    query.set('sort', state.sort)
    query.set('order', state.order)
  }
  if (state.offset !== DEFAULTS.offset) query.set('offset', String(state.offset))
  if (state.limit !== DEFAULTS.limit) query.set('limit', String(state.limit))
  return query.toString()
}

export function tenantsPage (container, route) {
  const state = stateFrom(route.query)
  const heading = h('h1', { tabindex: -1 }, 'Tenants')

  const search = h('input', { id: 'tenant-search', type: 'search', autocomplete: 'off', spellcheck: 'false', value: state.search, 'aria-describedby': 'tenant-search-hint' })
  const searchForm = h('form', { role: 'search', class: 'toolbar' },
    h('div', { class: 'field' },
      h('label', { for: 'tenant-search' }, 'Search tenants'),
      search,
      h('p', { id: 'tenant-search-hint', class: 'hint' }, 'Part of a tenant id, any case.')))

  const updated = h('p', { class: 'meta' })
  const problem = problemLine()
  const headerRow = h('tr')
  const body = h('tbody')
  const table = h('table', { class: 'data tenants' },
    h('caption', { class: 'visually-hidden' }, 'Tenants active this month'),
    h('thead', {}, headerRow),
    body)
  const wrap = h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Tenants table', tabindex: 0 }, table)
  const empty = h('p', { class: 'empty', hidden: true })
  const previous = h('button', { type: 'button', 'data-key': 'previous' }, 'Previous')
  const next = h('button', { type: 'button', 'data-key': 'next' }, 'Next')
  const range = h('p', { class: 'range', 'aria-live': 'polite' })
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of tenants' }, previous, range, next)

  container.append(heading, searchForm, updated, problem.element, wrap, empty, pager)

  let latest = 0
  const load = async () => {
    const ticket = ++latest
    const query = new URLSearchParams({ search: state.search, sort: state.sort, order: state.order, offset: String(state.offset), limit: String(state.limit) })
    const page = await api('tenants?' + query)
    if (ticket !== latest) return // a newer read (search typed meanwhile) wins
    draw(page)
  }

  const draw = (page) => {
    renderIfChanged(body, page.rows, rows => rows.map(row))
    empty.hidden = page.rows.length > 0
    empty.textContent = page.total > 0
      ? 'No tenants on this page.'
      : state.search === '' ? 'No tenant has used anything this month.' : `No tenant id contains “${state.search}”.`
    range.textContent = page.rows.length === 0 ? `0 of ${count(page.total)}` : `${count(page.offset + 1)}–${count(page.offset + page.rows.length)} of ${count(page.total)}`
    setEnabled(previous, state.offset > 0, next)
    setEnabled(next, page.offset + page.rows.length < page.total, previous)
    updated.replaceChildren(`Updated ${clock(Date.now())} · order and total from the index of ${clock(page.indexedAt)}; the numbers of each row are live.`)
  }

  const live = every(REFRESH_MS, problem.watch(load))

  /** A change of search, sort or page: kept in the hash (no new history entry) and read at once. */
  const change = (patch) => {
    Object.assign(state, patch)
    const query = queryOf(state)
    history.replaceState(null, '', '#/tenants' + (query === '' ? '' : '?' + query))
    drawHeaders()
    live.refresh()
  }

  const drawHeaders = () => {
    const cell = (text, className) => h('th', { scope: 'col', class: className }, text)
    const sortable = (key, className) => {
      const active = state.sort === key
      const button = h('button', {
        type: 'button',
        class: 'sort',
        'data-key': `sort:${key}`,
        onclick: () => change({ sort: key, order: active ? (state.order === 'asc' ? 'desc' : 'asc') : SORTS[key].first, offset: 0 })
      }, SORTS[key].label, h('span', { class: 'sort-arrow', 'aria-hidden': 'true' }, active ? (state.order === 'asc' ? ' ▲' : ' ▼') : ''))
      return h('th', { scope: 'col', class: className, 'aria-sort': active ? (state.order === 'asc' ? 'ascending' : 'descending') : 'none' }, button)
    }
    const cells = [
      sortable('tenantId'), sortable('tier'), sortable('used'), sortable('share', 'num'),
      cell('Minute', 'num'), cell('Hour', 'num'), cell('In flight', 'num'), cell('Flags')
    ]
    const focusedSort = document.activeElement?.dataset?.key
    headerRow.replaceChildren(...cells)
    if (focusedSort?.startsWith('sort:')) headerRow.querySelector(`[data-key="${focusedSort}"]`)?.focus()
  }
  drawHeaders()

  let typing
  search.addEventListener('input', () => {
    clearTimeout(typing)
    typing = setTimeout(() => change({ search: search.value, offset: 0 }), SEARCH_DELAY_MS)
  })
  searchForm.addEventListener('submit', (event) => {
    event.preventDefault()
    clearTimeout(typing)
    change({ search: search.value, offset: 0 })
  })
  previous.addEventListener('click', () => change({ offset: Math.max(0, state.offset - state.limit) }))
  next.addEventListener('click', () => change({ offset: state.offset + state.limit }))

  return {
    title: 'Tenants',
    heading,
    unmount () {
      clearTimeout(typing)
      live.stop()
      latest++
    }
  }
}

/** One tenant's row; its link carries a key so a refresh gives focus back to it. */
function row (r) {
  const flags = [r.override ? badge('override', 'override') : null, r.blocked ? badge('blocked', 'blocked') : null, r.shadow ? badge('shadow', 'shadow') : null]
  return h('tr', {},
    h('th', { scope: 'row', class: 'tenant-cell' }, tenantLink(r.tenantId, 'tenant:' + r.tenantId)),
    h('td', {}, r.tier),
    h('td', { class: 'bar-cell' }, usageBar(r.month.used, r.month.limit, 'Month')),
    h('td', { class: 'num' }, share(r.month.used, r.month.limit)),
    h('td', { class: 'num' }, `${count(r.minute.used)} / ${limitText(r.minute.limit)}`),
    h('td', { class: 'num' }, `${count(r.hour.used)} / ${limitText(r.hour.limit)}`),
    h('td', { class: 'num' }, `${count(r.concurrent.inFlight)} / ${limitText(r.concurrent.limit)}`),
    h('td', { class: 'flags' }, flags))
}

/** Enables or disables a pager button; focus on a button about to be disabled goes to its twin. */
function setEnabled (button, enabled, twin) {
  if (!enabled && document.activeElement === button) twin.focus()
  button.disabled = !enabled
}
