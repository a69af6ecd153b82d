// The console's shell: hash routing between its pages, the navigation's current link, and the
// banners for a refused or failing server.
import { watchConnection } from './api.js'
import { h } from './dom.js'
import { platformPage } from './platform-page.js'
import { tenantPage } from './tenant-page.js'
import { tenantsPage } from './tenants-page.js'

const main = document.getElementById('main')
const page = document.getElementById('page')
const trouble = document.getElementById('trouble')
const refused = document.getElementById('refused')

/**
 * The route a hash names: `#/tenants?query`, `#/tenants/<encoded id>`, `#/platform`; an empty hash
 * is the tenants page. Undefined for a hash that is no route at all (left alone).
 */
function parseRoute (hash) {
  const raw = hash.replace(/^#/, '')
  if (raw === '' || raw === '/') return { name: 'tenants', query: new URLSearchParams() }
  if (!raw.startsWith('/')) return undefined
  const cut = raw.indexOf('?')
  const path = cut === -1 ? raw : raw.slice(0, cut)
  const query = new URLSearchParams(cut === -1 ? '' : raw.slice(cut + 1))
  if (path === '/tenants') return { name: 'tenants', query }
  if (path === '/platform') return { name: 'platform', query }
  if (path.startsWith('/tenants/') && path.length > '/tenants/'.length) {
    try {
      return { name: 'tenant', tenantId: decodeURIComponent(path.slice('/tenants/'.length)), query }
    } catch {
      return { name: 'missing', path }
    }
  }
  return { name: 'missing', path }
}

function missingPage (container, route) {
  const heading = h('h1', { tabindex: -1 }, 'Page not found')
  container.replaceChildren(heading,
    h('p', {}, 'The console has no page at ', h('code', {}, route.path), '. ', h('a', { href: '#/tenants' }, 'Go to the tenants'), '.'))
  return { title: 'Not found', heading, unmount () {} }
}

const PAGES = { tenants: tenantsPage, tenant: tenantPage, platform: platformPage, missing: missingPage }

/** The navigation's link of a page: the tenants link stands for a tenant's page too. */
function markNavigation (name) {
  for (const link of document.querySelectorAll('[data-nav]')) {
    const section = name === 'tenant' ? 'tenants' : name
    if (link.dataset.nav !== section) link.removeAttribute('aria-current')
    else link.setAttribute('aria-current', name === section ? 'page' : 'true')
  }
}

let current
let firstView = true

function show () {
  const route = parseRoute(location.hash)
  if (route === undefined) return
  current?.unmount()
  const container = h('div', { class: `page page-${route.name}` })
  page.replaceChildren(container)
  current = PAGES[route.name](container, route)
  document.title = `${current.title} · Rate limits`
  markNavigation(route.name)
  // Moving to another page puts the keyboard and screen reader at its title; the first view keeps
  // the browser's own start (so the skip link comes first).
  if (!firstView) current.heading.focus()
  firstView = false
}

// The skip link would change the hash, which is the router's: it moves focus itself.
document.querySelector('.skip-link').addEventListener('click', (event) => {
  event.preventDefault()
  main.focus()
})

watchConnection((state) => {
  if (state.kind === 'ok') {
    trouble.hidden = true
    refused.hidden = true
    page.hidden = false
  } else if (state.kind === 'trouble') {
    const text = `${state.message} Showing the last data read; trying again every few seconds.`
    if (trouble.textContent !== text) trouble.textContent = text
    trouble.hidden = false
  } else if (state.kind === 'refused') {
    if (refused.hidden) {
      refused.replaceChildren(
        h('strong', {}, 'Not authorized. '),
        `The server refused this console's requests (HTTP ${state.status}): sign in with an operator account, then `,
        h('button', { type: 'button', class: 'link-button', onclick: () => location.reload() }, 'reload the page'), '.')
    }
    refused.hidden = false
    trouble.hidden = true
    page.hidden = true
  }
})

window.addEventListener('hashchange', show)
show()
