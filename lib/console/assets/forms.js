// Form plumbing for the tenant's actions: labelled inputs, what the user typed turned into a body
// (the server's schemas judge it, not the page), and the server's refusal shown where it belongs.
import { h } from './dom.js'

/**
 * A labelled text input with an optional hint and a slot for the server's message. The input is
 * described by the hint, and by the message while there is one.
 */
export function field ({ id, label, hint, describedBy, size = 10, inputmode, type = 'text', value = '' }) {
  const input = h('input', { id, name: id, type, size, inputmode, autocomplete: 'off', value })
  const ownHint = hint === undefined ? undefined : `${id}-hint`
  // `describedBy`: a hint shared by several fields (the ids of what describes the input, joined)
  const hintId = [describedBy, ownHint].filter(Boolean).join(' ') || undefined
  if (hintId !== undefined) input.setAttribute('aria-describedby', hintId)
  const error = h('p', { id: `${id}-error`, class: 'field-error', hidden: true })
  const element = h('div', { class: 'field' },
    h('label', { for: id }, label),
    input,
    hint === undefined ? null : h('p', { id: ownHint, class: 'hint' }, hint),
    error)
  return { element, input, error, hintId }
}

/** A select of time units, seconds per unit as the values. */
export function unitSelect (id, label, selected = 'minutes') {
  const units = [['seconds', 1], ['minutes', 60], ['hours', 3600], ['days', 86_400]]
  return h('select', { id, name: id, 'aria-label': label },
    units.map(([name, seconds]) => h('option', { value: seconds, selected: name === selected }, name)))
}

/**
 * What was typed, as the body should carry it: empty → left out (undefined); "unlimited" → null;
 * a number → that number ("-5" → -5); anything else → the text itself, so the server refuses it
 * with its own message.
 */
export function typed (text) {
  const value = text.trim()
  if (value === '') return undefined
  if (/^unlimited$/i.test(value)) return null
  if (/^[-+]?(\d+(\.\d*)?|\.\d+)(e[-+]?\d+)?$/i.test(value)) return Number(value)
  return value
}

/** A duration typed as a count of units, in seconds (a non-number goes through as typed). */
export function typedSeconds (text, unitSeconds) {
  const value = typed(text)
  return typeof value === 'number' ? value * Number(unitSeconds) : value
}

/**
 * The feedback of one form: a status line (role=status) for success, an alert (role=alert) for a
 * refusal that names no field of the form, and per-field messages for those that do.
 * `fields` maps a body field name to the result of field().
 */
export function feedback (fields) {
  const status = h('p', { class: 'form-status', role: 'status' })
  const alert = h('p', { class: 'form-alert', role: 'alert', hidden: true })

  const clear = () => {
    status.textContent = ''
    alert.textContent = ''
    alert.hidden = true
    for (const f of Object.values(fields)) {
      f.error.textContent = ''
      f.error.hidden = true
      f.input.removeAttribute('aria-invalid')
      if (f.hintId === undefined) f.input.removeAttribute('aria-describedby')
      else f.input.setAttribute('aria-describedby', f.hintId)
    }
  }

  /** Shows an error; returns the input to focus (the field at fault) or the alert's form. */
  const fail = (err) => {
    clear()
    const at = err.field === undefined ? undefined : fields[err.field]
    if (at !== undefined) {
      at.error.textContent = err.message
      at.error.hidden = false
      at.input.setAttribute('aria-invalid', 'true')
      at.input.setAttribute('aria-describedby', [at.hintId, at.error.id].filter(Boolean).join(' '))
      at.input.focus()
      return
    }
    alert.textContent = err.status === 0 ? err.message : `Refused: ${err.message}`
    alert.hidden = false
  }

  const succeed = (message) => {
    clear()
    status.textContent = message
  }

  return { status, alert, clear, fail, succeed }
}

/**
 * Runs a form's action on submit; a refusal goes to the form's feedback, success to its status
 * line and then `done()` (the page's refresh).
 */
export function onSubmit (form, fb, action, done) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault()
    await act(form, fb, () => action(event.submitter), done)
  })
}

/**
 * Runs one action, and no second one of the same form until it ends (marked aria-busy rather than
 * by disabling the buttons, which would take the keyboard focus away from the one just pressed).
 */
export async function act (form, fb, action, done) {
  if (form.getAttribute('aria-busy') === 'true') return
  form.setAttribute('aria-busy', 'true')
  try {
    const message = await action()
    fb.succeed(message)
    await done?.()
  } catch (err) {
    fb.fail(err)
  } finally {
    form.removeAttribute('aria-busy')
  }
}
