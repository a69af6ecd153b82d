// Platform (#/platform): what holds for every tenant (tiers, environment multipliers, shadow
// modes), the quota alerts of all tenants as they come, and the store's health as this instance
// sees it. All of it live.
import { api } from './api.js'
import { clock, count, h, limitText, problemLine, renderIfChanged, section, tenantLink, timeElement } from './dom.js'
import { every } from './live.js'

const REFRESH_MS = 3000

export function platformPage (container) {
  const heading = h('h1', { tabindex: -1 }, 'Platform')
  const updated = h('p', { class: 'meta' })
  const problem = problemLine()
  const health = h('div')
  const tiers = h('div')
  const environment = h('div')
  const shadow = h('div')
  const events = h('div')
  container.append(heading, updated, problem.element,
    h('div', { class: 'columns' },
      section('Store health', 'health-title', health),
      section('Environment', 'environment-title', environment, h('h3', {}, 'Shadow mode'), shadow)),
    section('Tiers', 'tiers-title', tiers),
    section('Quota alerts', 'events-title', events))

  let stopped = false
  const load = async () => {
    const [tierList, multipliers, modes, feed, store] = await Promise.all([
      api('tiers'), api('multipliers'), api('shadow'), api('events?limit=50'), api('health')])
    if (stopped) return
    renderIfChanged(health, store, healthView)
    renderIfChanged(tiers, tierList, tiersView)
    renderIfChanged(environment, multipliers, environmentView)
    renderIfChanged(shadow, modes, shadowView)
    renderIfChanged(events, feed, eventsView)
    updated.textContent = `Updated ${clock(Date.now())} · refreshed every ${REFRESH_MS / 1000} s`
  }
  const live = every(REFRESH_MS, problem.watch(load))
  return {
    title: 'Platform',
    heading,
    unmount () {
      stopped = true
      live.stop()
    }
  }
}

function fact (term, ...details) {
  return h('div', {}, h('dt', {}, term), h('dd', {}, details))
}

const yesNo = (value, yes, no) => value ? yes : no

function healthView (s) {
  const d = s.degraded
  const status = s.reachable === false || s.breaker === 'open'
    ? h('span', { class: 'badge badge-blocked' }, 'trouble')
    : h('span', { class: 'badge badge-ok' }, 'ok')
  return [
    h('dl', { class: 'facts' },
      fact('Store', h('strong', {}, s.store), ' ', status),
      fact('Reachable', s.reachable === null ? 'not applicable (in-process store)' : yesNo(s.reachable, 'yes', 'no')),
      fact('Ping', s.pingMs === null ? '—' : `${s.pingMs} ms`),
      fact('Circuit breaker', s.breaker, s.openNodes.length > 0 ? ` (open: ${s.openNodes.join(', ')})` : ''),
      fact('Local fallback', yesNo(s.fallback, 'deciding now', 'not in use')),
      fact('Checked', timeElement(s.checkedAt, clock(s.checkedAt)))),
    h('p', { class: 'hint' }, 'Decisions made without the store since this instance started:'),
    h('dl', { class: 'facts compact' },
      fact('Admitted', count(d.admitted)),
      fact('Refused', count(d.refused)),
      fact('By the fallback', count(d.fallback)),
      fact('Not settled', count(d.unsettled)),
      fact('Last', d.lastAt === null ? 'never' : timeElement(d.lastAt)))
  ]
}

function tiersView (list) {
  const names = Object.keys(list).sort()
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Tiers', tabindex: 0 },
    h('table', { class: 'data' },
      h('caption', { class: 'visually-hidden' }, 'Tiers and their limits, before overrides and multipliers'),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col' }, 'Tier'), h('th', { scope: 'col', class: 'num' }, 'Per minute'), h('th', { scope: 'col', class: 'num' }, 'Per hour'),
        h('th', { scope: 'col', class: 'num' }, 'Concurrent'), h('th', { scope: 'col', class: 'num' }, 'Monthly quota'), h('th', { scope: 'col' }, 'Source'))),
      h('tbody', {}, names.map(name => {
        const { limits, source } = list[name]
        return h('tr', {},
          h('th', { scope: 'row' }, name),
          h('td', { class: 'num' }, limitText(limits.requestsPerMinute)),
          h('td', { class: 'num' }, limitText(limits.requestsPerHour)),
          h('td', { class: 'num' }, limitText(limits.concurrentRequests)),
          h('td', { class: 'num' }, limitText(limits.monthlyQuota)),
          h('td', {}, source === 'runtime' ? h('span', { class: 'badge badge-override' }, 'runtime') : 'configured'))
      }))))
}

function environmentView ({ environment, multipliers }) {
  const effective = multipliers[environment] ?? 1
  const others = Object.keys(multipliers).sort()
  return [
    h('dl', { class: 'facts' },
      fact('This instance', h('strong', {}, environment)),
      fact('Its multiplier', `× ${effective}`, Object.hasOwn(multipliers, environment) ? '' : ' (none stored)')),
    others.length === 0
      ? h('p', { class: 'empty' }, 'No environment multiplier stored.')
      : h('table', { class: 'data compact' },
        h('caption', {}, 'Stored multipliers'),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Environment'), h('th', { scope: 'col', class: 'num' }, 'Multiplier'))),
        h('tbody', {}, others.map(name => h('tr', { class: name === environment ? 'current' : undefined },
          h('th', { scope: 'row' }, name, name === environment ? ' (this one)' : ''),
          h('td', { class: 'num' }, `× ${multipliers[name]}`)))))
  ]
}

function shadowView ({ global, tiers, tenants }) {
  return h('dl', { class: 'facts' },
    fact('Everywhere', global ? h('span', { class: 'badge badge-shadow' }, 'on') : 'off'),
    fact('Tiers', tiers.length === 0 ? 'none' : tiers.join(', ')),
    fact('Tenants', tenants.length === 0
      ? 'none'
      : h('ul', { class: 'inline-list' }, tenants.map(id => h('li', {}, tenantLink(id, 'shadow:' + id))))))
}

function eventsView ({ source, events }) {
  const from = source === 'stream' ? 'From the alerts stream in Redis (all instances).' : 'From this instance’s memory (no stream): alerts fired elsewhere are not listed.'
  if (events.length === 0) return [h('p', { class: 'hint' }, from), h('p', { class: 'empty' }, 'No quota alert yet.')]
  return [
    h('p', { class: 'hint' }, from, ' Newest first.'),
    h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Quota alerts', tabindex: 0 },
      h('table', { class: 'data' },
        h('caption', { class: 'visually-hidden' }, 'Quota alerts of all tenants, newest first'),
        h('thead', {}, h('tr', {},
          h('th', { scope: 'col' }, 'When'), h('th', { scope: 'col' }, 'Tenant'), h('th', { scope: 'col' }, 'Tier'),
          h('th', { scope: 'col' }, 'Bucket'), h('th', { scope: 'col', class: 'num' }, 'Threshold'), h('th', { scope: 'col', class: 'num' }, 'Used / quota'))),
        h('tbody', {}, events.map(e => h('tr', {},
          h('td', {}, timeElement(e.at)),
          h('th', { scope: 'row', class: 'tenant-cell' }, e.tenantId === null || e.tenantId === undefined ? e.scope : tenantLink(e.tenantId, 'event:' + e.id)),
          h('td', {}, e.tier ?? '—'),
          h('td', {}, e.bucket ?? '—'),
          h('td', { class: 'num' }, `${Math.round(e.threshold * 100)} %`),
          h('td', { class: 'num' }, `${count(e.used)} / ${count(e.quota)}`))))))
  ]
}
