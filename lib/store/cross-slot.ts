// A request whose levels live in different Redis Cluster slots (a shared route budget has a slot of
// its own) cannot be decided by one script call. The levels outside the subject's slot are reserved
// first, one call each; then the subject and the levels of its slot (its organization) are decided
// together; every reservation is given back at once when a later step refuses or fails. So a
// refused request keeps nothing anywhere, except while a node fails: a reservation whose give-back
// cannot reach its node stays counted (an over-count, never an under-count) until it leaves its
// window, and its lease until the release is retried or the lease expires.
import type { LevelAnswer, LevelTerms } from './level-group.js'
import { countedIn, type AdjustRequest, type Adjusted, type AdmitRequest, type DecisionSink, type Decision } from './types.js'
import type { StoreKeys } from '../keys.js'

export interface CrossSlotStore {
  /** Decides `levels` in one call, all or nothing. */
  sendLevels: (levels: readonly LevelTerms[], request: AdmitRequest, answered: (answers: LevelAnswer[]) => void, fail: (err: unknown) => void) => void
  adjust: (request: AdjustRequest) => Promise<Adjusted>
  release: (keys: StoreKeys, leaseId: string) => void
  /** The decision from the outcomes of the levels at `decided` (indices into the request's levels). */
  decisionOf: (request: AdmitRequest, levels: readonly LevelTerms[], decided: readonly number[], answers: readonly LevelAnswer[]) => Decision
}

const ignore = (): void => {}

/** `near`: indices of the levels in the subject's slot (0 among them); `far`: the others, reserved first. */
export function admitAcrossSlots (store: CrossSlotStore, request: AdmitRequest, levels: readonly LevelTerms[], near: readonly number[], far: readonly number[], sink: DecisionSink): void {
  const outcomes: LevelAnswer[] = []
  const decided: number[] = []
  const reserved: number[] = []

  const giveBack = (): void => {
    if (request.peek === true) return
    for (const at of reserved) {
      const { keys, limits } = levels[at]
      if (request.cost > 0) {
        store.adjust({ keys, amount: -request.cost, reservedAt: outcomes[at].outcome[2], counted: countedIn(keys, limits, Infinity) }).catch(ignore)
      }
      if (request.leaseId !== '' && limits.concurrentRequests !== Infinity) store.release(keys, request.leaseId)
    }
  }
  const failed = (err: unknown): void => {
    giveBack()
    sink.failed(err)
  }
  const finish = (): void => {
    let decision: Decision
    try {
      // The levels in the request's order (the subject first), whichever was asked first.
      decision = store.decisionOf(request, levels, decided.sort((a, b) => a - b), outcomes)
    } catch (err) {
      failed(err)
      return
    }
    if (!decision.allowed) giveBack()
    sink.decided(decision)
  }

  const step = (j: number): void => {
    const group = j < far.length ? [far[j]] : near
    store.sendLevels(group.map(at => levels[at]), request, answers => {
      group.forEach((at, i) => { outcomes[at] = answers[i] })
      decided.push(...group)
      const refused = answers.some(a => a.outcome[0] !== 0)
      if (j < far.length && !refused) {
        reserved.push(far[j])
        step(j + 1)
      } else {
        finish()
      }
    }, failed)
  }
  step(0)
}
