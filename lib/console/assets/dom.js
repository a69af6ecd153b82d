// Building the page without HTML strings: data (tenant ids above all) only ever goes in as text
// nodes or attribute values, so no id can become markup.

/**
 * An element: `h('a', { href, class: 'x', onclick: fn }, 'text', child)`. Attributes that are
 * null, undefined or false are left out; true sets an empty attribute; `on*` adds a listener.
 */
export function h (tag, attributes = {}, ...children) {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue
    if (name.startsWith('on') && typeof value === 'function') element.addEventListener(name.slice(2), value)
    else element.setAttribute(name, value === true ? '' : String(value))
  }
  element.append(...nodes(children))
  return element
}

/** Children as nodes: strings and numbers become text; arrays are flattened; empty values skipped. */
export function nodes (children) {
  const out = []
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue
    out.push(child instanceof Node ? child : document.createTextNode(String(child)))
  }
  return out
}

/**
 * Replaces a container's children. When focus was on an element carrying `data-key` inside it, the
 * new element with the same key gets focus back, so a live refresh never throws the keyboard out.
 */
export function replaceKeepingFocus (container, ...children) {
  const active = document.activeElement
  const key = active instanceof HTMLElement && container.contains(active) ? active.dataset.key : undefined
  container.replaceChildren(...nodes(children))
  if (key === undefined) return
  for (const candidate of container.querySelectorAll('[data-key]')) {
    if (candidate.dataset.key === key) {
      candidate.focus()
      return
    }
  }
}

const drawn = new WeakMap()

/** Rebuilds a container only when its data changed since the last time (live refreshes). */
export function renderIfChanged (container, data, build) {
  const signature = JSON.stringify(data)
  if (drawn.get(container) === signature) return
  drawn.set(container, signature)
  replaceKeepingFocus(container, build(data))
}

/** A titled region of a page: its h2 names it for assistive technology. */
export function section (title, id, ...content) {
  return h('section', { 'aria-labelledby': id }, h('h2', { id }, title), ...content)
}

/** The hash link of a tenant's page; the id is encoded as one path segment. */
export function tenantHref (tenantId) {
  return '#/tenants/' + encodeURIComponent(tenantId)
}

/** A link to a tenant's page, its id as text. */
export function tenantLink (tenantId, key) {
  return h('a', { href: tenantHref(tenantId), class: 'tenant-id', 'data-key': key }, tenantId)
}

/**
 * The line that says why a page's data could not be read, for a refusal the banners do not tell
 * of (they tell of sign-in, network and server failures): a 4xx such as a tenant id too long for
 * the service's router. `watch(load)` shows it when `load` fails and clears it when it works.
 */
export function problemLine () {
  const element = h('p', { class: 'form-alert page-problem', role: 'alert', hidden: true })
  const told = (status) => status === 0 || status === 401 || status === 403 || status >= 500
  return {
    element,
    watch: (load) => async () => {
      try {
        await load()
        element.hidden = true
      } catch (err) {
        if (typeof err?.status === 'number' && !told(err.status)) {
          const text = `This page's data could not be read (HTTP ${err.status}): ${err.message}`
          if (element.textContent !== text) element.textContent = text
          element.hidden = false
        }
        throw err
      }
    }
  }
}

/** A small label: override, blocked, shadow. */
export function badge (text, kind) {
  return h('span', { class: `badge badge-${kind}` }, text)
}

/**
 * Used against a limit as a <meter> (coloured from 80 % and 90 %, like the quota alerts) and the
 * numbers beside it. An unlimited window shows the count alone.
 */
export function usageBar (used, limit, label) {
  const numbers = h('span', { class: 'bar-numbers' }, `${count(used)} / ${limitText(limit)}`)
  if (limit === null || limit === undefined) return h('span', { class: 'bar' }, numbers)
  const meter = h('meter', {
    min: 0,
    max: Math.max(limit, 1),
    value: Math.min(used, Math.max(limit, 1)),
    low: limit * 0.8,
    high: limit * 0.9,
    optimum: 0,
    'aria-label': `${label}: ${count(used)} of ${count(limit)}`
  })
  return h('span', { class: 'bar' }, meter, numbers)
}

// ---- formatting ----

const integers = new Intl.NumberFormat('en-US')

/** A count with thousands separators. */
export function count (n) {
  return typeof n === 'number' ? integers.format(n) : '—'
}

/** A limit: a count, or "unlimited" for null. */
export function limitText (limit) {
  return limit === null ? 'unlimited' : count(limit)
}

/** used / limit as a percentage with one decimal; empty for an unlimited window. */
export function share (used, limit) {
  if (limit === null || limit === undefined) return '—'
  if (limit === 0) return used > 0 ? '100 %' : '0 %'
  return `${(Math.round((used / limit) * 1000) / 10).toFixed(1)} %`
}

const two = n => String(n).padStart(2, '0')

/** hh:mm:ss, local time. */
export function clock (ms) {
  const d = new Date(ms)
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`
}

/** YYYY-MM-DD hh:mm, local time. */
export function dateTime (ms) {
  const d = new Date(ms)
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}`
}

/** A <time> element for an instant. */
export function timeElement (ms, text = dateTime(ms)) {
  return h('time', { datetime: new Date(ms).toISOString() }, text)
}
