// A tenant (#/tenants/<id>): its limits and where each comes from, its live usage, buckets and
// alerts, and the operator's actions on it (override, block, shadow mode, reset).
import { api, tenantPath } from './api.js'
import { badge, clock, count, dateTime, h, limitText, problemLine, renderIfChanged, section, share, timeElement, usageBar } from './dom.js'
import { act, feedback, field, onSubmit, typed, typedSeconds, unitSelect } from './forms.js'
import { every } from './live.js'

const REFRESH_MS = 3000

const LIMITS = [
  ['requestsPerMinute', 'Requests per minute'],
  ['requestsPerHour', 'Requests per hour'],
  ['concurrentRequests', 'Concurrent requests'],
  ['monthlyQuota', 'Monthly quota']
]

const TIER_SOURCES = {
  request: 'as asked for',
  seen: 'reported by its latest request',
  tenant: 'stored for this tenant',
  default: 'the default tier'
}

export function tenantPage (container, route) {
  const { tenantId } = route
  const heading = h('h1', { tabindex: -1 }, 'Tenant ', h('span', { class: 'tenant-id' }, tenantId))
  const updated = h('p', { class: 'meta' })
  const problem = problemLine()
  const policy = h('div')
  const usage = h('div')
  const buckets = h('div')
  const alerts = h('div')

  const refreshNow = () => live.refresh()
  const forms = actionForms(tenantId, refreshNow)

  container.append(
    heading,
    h('p', { class: 'back' }, h('a', { href: '#/tenants' }, '← All tenants')),
    updated,
    problem.element,
    h('div', { class: 'columns' },
      section('Limits', 'limits-title', policy),
      section('Usage', 'usage-title', usage)),
    section('Actions', 'actions-title', forms.element),
    h('div', { class: 'columns' },
      section('Buckets', 'buckets-title', buckets),
      section('Recent quota alerts', 'alerts-title', alerts)))

  const load = async () => {
    const path = tenantPath(tenantId)
    const [resolved, windows, bucketList, events, tiers, shadow] = await Promise.all([
      api(path), api(path + '/usage'), api(path + '/buckets'),
      api('events?' + new URLSearchParams({ tenantId, limit: '20' })), api('tiers'), api('shadow')
    ])
    if (stopped) return
    renderIfChanged(policy, { resolved, tier: tiers[resolved.tier] ?? null }, policyView)
    renderIfChanged(usage, windows, usageView)
    renderIfChanged(buckets, bucketList, bucketsView)
    renderIfChanged(alerts, events, alertsView)
    forms.show(resolved, shadow.tenants.includes(tenantId))
    updated.textContent = `Updated ${clock(Date.now())} · refreshed every ${REFRESH_MS / 1000} s`
  }

  let stopped = false
  const live = every(REFRESH_MS, problem.watch(load))
  return {
    title: `Tenant ${tenantId}`,
    heading,
    unmount () {
      stopped = true
      live.stop()
    }
  }
}

// ---- what the tenant is held to ----

function policyView ({ resolved, tier }) {
  const overrideCell = (key) => {
    if (resolved.override === null || resolved.override[key] === undefined) return h('span', { class: 'muted' }, '—')
    return limitText(resolved.override[key])
  }
  const rows = LIMITS.map(([key, label]) => h('tr', {},
    h('th', { scope: 'row' }, label),
    h('td', { class: 'num' }, tier === null ? '?' : limitText(tier.limits[key])),
    h('td', { class: 'num' }, overrideCell(key)),
    h('td', { class: 'num' }, `× ${resolved.multiplier}`),
    h('td', { class: 'num strong' }, limitText(resolved.limits[key])),
    h('td', {}, resolved.sources[key])))
  const table = h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Limits', tabindex: 0 },
    h('table', { class: 'data' },
      h('caption', { class: 'visually-hidden' }, 'Limits: the tier value, the override, the environment multiplier and the effective limit'),
      h('thead', {}, h('tr', {}, ['Limit', 'Tier value', 'Override', 'Multiplier', 'Effective', 'Source'].map((text, i) =>
        h('th', { scope: 'col', class: i > 0 && i < 5 ? 'num' : undefined }, text)))),
      h('tbody', {}, rows)))
  return [
    h('dl', { class: 'facts' },
      fact('Tier', h('strong', {}, resolved.tier), ` (${TIER_SOURCES[resolved.tierSource] ?? resolved.tierSource}${tier === null ? '' : `, ${tier.source}`})`),
      fact('Environment', `${resolved.environment}, multiplier × ${resolved.multiplier}`),
      fact('Override', resolved.override === null ? 'none' : [badge('override', 'override'), ' ', until(resolved.override.expiresAt)]),
      fact('Block', resolved.blocked === null
        ? 'not blocked'
        : [badge('blocked', 'blocked'), ' ', resolved.blocked.reason ?? 'no reason given', ', ', until(resolved.blocked.expiresAt)]),
      fact('Shadow mode', resolved.shadow ? [badge('shadow', 'shadow'), ' limits counted, not enforced'] : 'off')),
    table
  ]
}

function fact (term, ...details) {
  return h('div', {}, h('dt', {}, term), h('dd', {}, details))
}

function until (expiresAt) {
  return expiresAt === null ? 'no expiry' : ['until ', timeElement(expiresAt)]
}

// ---- usage ----

function usageView (u) {
  const row = (label, window, resets) => h('tr', {},
    h('th', { scope: 'row' }, label),
    h('td', { class: 'bar-cell' }, usageBar(window.used, window.limit, label)),
    h('td', { class: 'num' }, window.remaining === undefined ? '—' : limitText(window.remaining)),
    h('td', {}, resets))
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Usage', tabindex: 0 },
    h('table', { class: 'data' },
      h('caption', { class: 'visually-hidden' }, 'Usage per window'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Window'), h('th', { scope: 'col' }, 'Used / limit'),
        h('th', { scope: 'col', class: 'num' }, 'Remaining'), h('th', { scope: 'col' }, 'Resets'))),
      h('tbody', {},
        row('Minute', u.minute, 'sliding 60 s'),
        row('Hour', u.hour, 'sliding 60 min'),
        row('Month', u.month, ['at ', timeElement(u.month.resetAt)]),
        row('In flight', { used: u.concurrent.inFlight, limit: u.concurrent.limit }, 'as requests end'))))
}

function bucketsView ({ month, buckets }) {
  if (buckets.length === 0) return h('p', { class: 'empty' }, `No bucket with a monthly cap of its own was used in ${month}.`)
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Buckets', tabindex: 0 },
    h('table', { class: 'data' },
      h('caption', { class: 'visually-hidden' }, `Buckets with a monthly cap of their own, ${month}`),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Bucket'), h('th', { scope: 'col' }, 'Month used / quota'),
        h('th', { scope: 'col', class: 'num' }, 'Share'), h('th', { scope: 'col', class: 'num' }, 'Minute'), h('th', { scope: 'col', class: 'num' }, 'Hour'))),
      h('tbody', {}, buckets.map(b => h('tr', {},
        h('th', { scope: 'row' }, b.bucket),
        h('td', { class: 'bar-cell' }, usageBar(b.used, b.quota, `Bucket ${b.bucket}`)),
        h('td', { class: 'num' }, share(b.used, b.quota)),
        h('td', { class: 'num' }, `${count(b.usage.minute.used)} / ${limitText(b.usage.minute.limit)}`),
        h('td', { class: 'num' }, `${count(b.usage.hour.used)} / ${limitText(b.usage.hour.limit)}`))))))
}

function alertsView ({ events }) {
  if (events.length === 0) return h('p', { class: 'empty' }, 'No quota alert for this tenant yet.')
  return h('ol', { class: 'events' }, events.map(e => h('li', {},
    timeElement(e.at), ' ',
    h('strong', {}, `${Math.round(e.threshold * 100)} %`), ' of ',
    e.bucket === null ? 'its monthly quota' : ['bucket ', h('code', {}, e.bucket)],
    ` (${count(e.used)} / ${count(e.quota)}, ${e.month})`)))
}

// ---- actions ----

/** The four forms; `show()` brings their state (what is set, what can be removed) up to date. */
function actionForms (tenantId, refresh) {
  const override = overrideForm(tenantId, refresh)
  const block = blockForm(tenantId, refresh)
  const shadow = shadowForm(tenantId, refresh)
  const reset = resetForm(tenantId, refresh)
  return {
    element: h('div', { class: 'actions' }, override.element, block.element, h('div', { class: 'stack' }, shadow.element, reset.element)),
    show (resolved, tenantShadow) {
      override.show(resolved.override)
      block.show(resolved.blocked)
      shadow.show(tenantShadow, resolved.shadow)
    }
  }
}

function overrideForm (tenantId, refresh) {
  const fields = Object.fromEntries(LIMITS.map(([key, label]) =>
    [key, field({ id: `override-${key}`, label, inputmode: 'numeric', describedBy: 'override-help' })]))
  fields.expiresInSeconds = field({ id: 'override-expires', label: 'Expires in', inputmode: 'decimal', size: 6, hint: 'Empty: no expiry.' })
  const unit = unitSelect('override-expires-unit', 'Unit of the expiry', 'hours')
  fields.expiresInSeconds.element.querySelector('input').after(' ', unit)
  const fb = feedback(fields)
  const remove = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Remove override')
  const form = h('form', { class: 'action', novalidate: true },
    h('fieldset', {},
      h('legend', {}, 'Override'),
      h('p', { class: 'hint', id: 'override-help' }, 'A whole number per limit; “unlimited” lifts it; an empty field keeps the tier’s value.'),
      fb.alert,
      h('div', { class: 'field-row' }, LIMITS.map(([key]) => fields[key].element)),
      fields.expiresInSeconds.element,
      h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Save override'), remove),
      fb.status))

  let shown // the override the fields were last filled from
  const fill = (current) => {
    for (const [key] of LIMITS) {
      const value = current?.[key]
      fields[key].input.value = value === undefined ? '' : value === null ? 'unlimited' : String(value)
    }
    fields.expiresInSeconds.input.value = ''
  }

  onSubmit(form, fb, async () => {
    const body = {}
    for (const [key] of LIMITS) {
      const value = typed(fields[key].input.value)
      if (value !== undefined) body[key] = value
    }
    const expires = typedSeconds(fields.expiresInSeconds.input.value, unit.value)
    if (expires !== undefined) body.expiresInSeconds = expires
    const saved = await api(tenantPath(tenantId, '/override'), { method: 'PUT', body })
    fill(saved)
    shown = JSON.stringify(saved)
    return 'Override saved.'
  }, refresh)

  remove.addEventListener('click', () => act(form, fb, async () => {
    await api(tenantPath(tenantId, '/override'), { method: 'DELETE' })
    fill(null)
    shown = 'null'
    return 'Override removed.'
  }, refresh))

  return {
    element: form,
    show (current) {
      if (remove.hidden !== (current === null)) {
        if (current === null && document.activeElement === remove) form.querySelector('[type=submit]').focus()
        remove.hidden = current === null
      }
      // Fill the fields from the stored override the first time, and when it changed elsewhere
      // while nobody was typing here.
      const stored = JSON.stringify(current)
      if (stored !== shown && !form.contains(document.activeElement)) {
        fill(current)
        shown = stored
      } else if (shown === undefined) {
        shown = stored
      }
    }
  }
}

function blockForm (tenantId, refresh) {
  const fields = {
    reason: field({ id: 'block-reason', label: 'Reason', size: 30, hint: 'Sent to the tenant as the 403’s message.' }),
    seconds: field({ id: 'block-duration', label: 'For', inputmode: 'decimal', size: 6, hint: 'Empty: until unblocked.' })
  }
  const unit = unitSelect('block-duration-unit', 'Unit of the block’s duration', 'hours')
  fields.seconds.element.querySelector('input').after(' ', unit)
  const fb = feedback(fields)
  const state = h('p', { class: 'state' })
  const submit = h('button', { type: 'submit', class: 'danger' }, 'Block')
  const unblock = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Unblock')
  const form = h('form', { class: 'action', novalidate: true },
    h('fieldset', {},
      h('legend', {}, 'Block'),
      state,
      fb.alert,
      h('div', { class: 'field-row' }, fields.reason.element, fields.seconds.element),
      h('div', { class: 'buttons' }, submit, unblock),
      fb.status))

  onSubmit(form, fb, async () => {
    const body = {}
    const reason = fields.reason.input.value
    if (reason.trim() !== '') body.reason = reason
    const seconds = typedSeconds(fields.seconds.input.value, unit.value)
    if (seconds !== undefined) body.seconds = seconds
    await api(tenantPath(tenantId, '/block'), { method: 'PUT', body })
    fields.reason.input.value = ''
    fields.seconds.input.value = ''
    return 'Tenant blocked: its requests are refused with 403.'
  }, refresh)

  unblock.addEventListener('click', () => act(form, fb, async () => {
    await api(tenantPath(tenantId, '/block'), { method: 'DELETE' })
    return 'Tenant unblocked.'
  }, refresh))

  return {
    element: form,
    show (blocked) {
      state.textContent = blocked === null ? 'Not blocked.' : `Blocked${blocked.expiresAt === null ? '' : ' until ' + dateTime(blocked.expiresAt)}: ${blocked.reason ?? 'no reason given'}.`
      if (blocked === null && document.activeElement === unblock) submit.focus()
      unblock.hidden = blocked === null
      submit.textContent = blocked === null ? 'Block' : 'Block again'
    }
  }
}

function shadowForm (tenantId, refresh) {
  const fb = feedback({})
  const state = h('p', { class: 'state' })
  const toggle = h('button', { type: 'submit', class: 'secondary' }, 'Turn shadow mode on')
  const form = h('form', { class: 'action', novalidate: true },
    h('fieldset', {},
      h('legend', {}, 'Shadow mode'),
      h('p', { class: 'hint' }, 'Limits are counted and reported but not enforced: a request over them is admitted.'),
      state, fb.alert,
      h('div', { class: 'buttons' }, toggle),
      fb.status))
  let on = false
  onSubmit(form, fb, async () => {
    const enabled = !on
    await api('shadow', { method: 'PUT', body: { scope: 'tenant', tenantId, enabled } })
    on = enabled
    return enabled ? 'Shadow mode on for this tenant.' : 'Shadow mode off for this tenant.'
  }, refresh)
  return {
    element: form,
    show (tenantShadow, effective) {
      on = tenantShadow
      state.textContent = tenantShadow
        ? 'On for this tenant.'
        : effective ? 'Off for this tenant, but on through its tier or globally (see Platform).' : 'Off.'
      toggle.textContent = tenantShadow ? 'Turn shadow mode off' : 'Turn shadow mode on'
    }
  }
}

/** Reset usage, in two steps: a button that asks, then "Confirm reset" or "Cancel". */
function resetForm (tenantId, refresh) {
  const fb = feedback({})
  const ask = h('button', { type: 'button', class: 'secondary' }, 'Reset usage…')
  const confirm = h('button', { type: 'submit', class: 'danger' }, 'Confirm reset')
  const cancel = h('button', { type: 'button', class: 'secondary' }, 'Cancel')
  const question = h('div', { class: 'confirm', hidden: true },
    h('p', { id: 'reset-question' }, 'Forget every counter of this tenant (minute, hour, month, buckets) and its leases?'),
    h('div', { class: 'buttons' }, confirm, cancel))
  const form = h('form', { class: 'action', novalidate: true },
    h('fieldset', {},
      h('legend', {}, 'Reset usage'),
      fb.alert,
      h('div', { class: 'buttons' }, ask),
      question,
      fb.status))
  const asking = (yes) => {
    question.hidden = !yes
    ask.hidden = yes
    ;(yes ? confirm : ask).focus()
  }
  ask.addEventListener('click', () => { fb.clear(); asking(true) })
  cancel.addEventListener('click', () => asking(false))
  question.addEventListener('keydown', (event) => { if (event.key === 'Escape') asking(false) })
  confirm.setAttribute('aria-describedby', 'reset-question')
  onSubmit(form, fb, async () => {
    await api(tenantPath(tenantId, '/usage'), { method: 'DELETE' })
    asking(false)
    return 'Usage reset.'
  }, refresh)
  return { element: form }
}
