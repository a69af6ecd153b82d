// Organizations and shared route budgets on both stores: every level in one decision, all or nothing.
import t from 'tap'
import { makeStore, STORE_KINDS } from './helpers/stores.js'
import { levelsSuite } from './helpers/levels-suite.js'

for (const kind of STORE_KINDS) {
  t.test(`${kind} store`, async t => { levelsSuite(t, (t, settings) => makeStore(t, kind, settings)) })
}
