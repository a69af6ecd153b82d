// Property tests: whatever the tenant ids, keys stay inside one hash tag, bounded, and distinct.
import fc from 'fast-check'
import t from 'tap'
import { MemoryStore } from '../dist/index.js'
import { encodeId, storeKeys } from '../dist/keys.js'
import { limits } from './helpers/stores.js'

// Any UTF-16 string: lone surrogates, control characters, braces, glob characters, long ones.
const anyId = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: fc.constantFrom('{', '}', '*', '?', '[', ']', '\n', ':', 'a', 'A', '\u00e9', '\u0301', '\uD800'), maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.string({ maxLength: 10_000, minLength: 5_000 })
)

t.test('keys: one hash tag, no injected braces, bounded length', async t => {
  fc.assert(fc.property(anyId, anyId, (tenant, bucket) => {
    const keys = storeKeys('maestro-rl', 'tenant', tenant, bucket)
    for (const key of [keys.counters, keys.leases]) {
      if (key.split('{').length !== 2 || key.split('}').length !== 2) return false
      if (key.length > 130) return false
      if (/[\s*?[\]]/.test(key)) return false
    }
    return true
  }), { numRuns: 2000 })
  t.pass('2000 generated pairs')
})

t.test('encodeId is injective', async t => {
  fc.assert(fc.property(anyId, anyId, (a, b) => a === b || encodeId(a) !== encodeId(b)), { numRuns: 5000 })
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 8 }), a => {
    // Ids that differ only by case or by Unicode normalisation are different tenants.
    const variants = new Set([a, a.toUpperCase(), a.toLowerCase(), a.normalize('NFC'), a.normalize('NFD')])
    return new Set([...variants].map(encodeId)).size === variants.size
  }), { numRuns: 2000 })
  t.pass('no collisions')
})

t.test('every generated tenant gets its own correct counters', async t => {
  const store = new MemoryStore()
  t.teardown(() => store.close())
  const ids = fc.sample(fc.uniqueArray(anyId, { minLength: 200, maxLength: 200 }), 1)[0]
  for (const id of ids) {
    const keys = storeKeys('p', 'tenant', id, undefined)
    t.equal((await store.admit({ keys, cost: 1, limits: limits(1), leaseId: '' })).allowed, true)
  }
  let refused = 0
  for (const id of ids) {
    const keys = storeKeys('p', 'tenant', id, undefined)
    if (!(await store.admit({ keys, cost: 1, limits: limits(1), leaseId: '' })).allowed) refused++
  }
  t.equal(refused, ids.length, 'each id saw only its own request')
})
