// Live refresh: a page's data read again every few seconds, never two reads at once, and not at all
// while the tab is hidden (it catches up as soon as the tab is shown again).

/**
 * Runs `tick` now, then `ms` after each run ends. `refresh()` runs it again at once (after the one
 * under way, if any); `stop()` ends it for good.
 */
export function every (ms, tick) {
  let timer
  let running = false
  let again = false
  let stopped = false

  const run = async () => {
    clearTimeout(timer)
    if (stopped || document.hidden) return
    if (running) {
      again = true
      return
    }
    running = true
    try {
      await tick()
    } catch {
      // The call reported its trouble (banner, message); the next tick tries again.
    } finally {
      running = false
    }
    if (stopped) return
    if (again) {
      again = false
      run()
    } else if (!document.hidden) {
      timer = setTimeout(run, ms)
    }
  }

  const onVisibility = () => { if (!document.hidden) run() }
  document.addEventListener('visibilitychange', onVisibility)
  run()
  return {
    refresh: run,
    stop () {
      stopped = true
      clearTimeout(timer)
      document.removeEventListener('visibilitychange', onVisibility)
    }
  }
}
