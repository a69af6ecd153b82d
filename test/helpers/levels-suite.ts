// Levels above the tenant (its organization, a shared route budget), decided with it all or nothing:
// the same tests for every store (memory, Redis, Redis Cluster).
import type { Test } from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { storeKeys } from '../../dist/keys.js'
import type { AdmitLevel, StoreKeys, TierLimits } from '../../dist/index.js'
import type { MakeStore } from './conformance.js'
import { limits, type StoreUnderTest } from './stores.js'

const OPEN = limits(Infinity)

/** Keys and levels of tenants of one organization, on a route with a shared budget. */
function world (s: StoreUnderTest, org: TierLimits, route?: TierLimits): {
  tenant: (id: string) => StoreKeys
  levels: AdmitLevel[]
  orgKeys: StoreKeys
  routeKeys: StoreKeys
} {
  const orgKeys = storeKeys(s.prefix, 'organization', 'acme', undefined)
  const routeKeys = storeKeys(s.prefix, 'route', 'renderer', undefined)
  const levels: AdmitLevel[] = [{ scope: 'organization', keys: orgKeys, limits: org }]
  if (route !== undefined) levels.push({ scope: 'route', keys: routeKeys, limits: route })
  return { tenant: id => storeKeys(s.prefix, 'tenant', id, undefined, 'acme'), levels, orgKeys, routeKeys }
}

/** Lets a release go out (the Redis store sends releases a moment later). */
const settle = async (): Promise<void> => { await sleep(10) }

export function levelsSuite (t: Test, make: MakeStore): void {
  t.test('two tenants of one organization share its minute limit; a refusal there counts nowhere', async t => {
    const s = make(t)
    const w = world(s, limits(3))
    const a = w.tenant('team-a')
    const b = w.tenant('team-b')
    const tenantLimits = limits(10, 100, 1000)
    for (const keys of [a, a, b]) t.equal((await s.store.admit({ keys, cost: 1, limits: tenantLimits, leaseId: '', levels: w.levels })).allowed, true)
    const refused = await s.store.admit({ keys: b, cost: 1, limits: tenantLimits, leaseId: '', levels: w.levels })
    t.equal(refused.allowed, false)
    t.equal(refused.scope, 'organization')
    t.equal(refused.reason, 'rate_limit_exceeded')
    t.ok(refused.retryAfterMs > 0)
    t.equal(refused.minute.remaining, 0, 'the headers report the tightest level: the organization has none left')
    t.same(refused.levels?.map(l => [l.scope, l.reason, l.minute.remaining]), [['tenant', undefined, 9], ['organization', 'rate_limit_exceeded', 0]])
    t.equal((await s.store.usage(b)).minute, 1, "the tenant's own minute keeps only what was admitted")
    t.equal((await s.store.usage(b)).month, 1, 'and its month too')
    t.equal((await s.store.usage(w.orgKeys)).minute, 3, 'the organization counts both tenants')
    t.equal((await s.store.usage(a)).minute, 2)
  })

  t.test("a refusal by the tenant's own limit counts nothing at the organization", async t => {
    const s = make(t)
    const w = world(s, limits(100, 1000, 10_000, 10))
    const a = w.tenant('team-a')
    t.equal((await s.store.admit({ keys: a, cost: 1, limits: limits(1), leaseId: 'x', levels: w.levels })).allowed, true)
    const refused = await s.store.admit({ keys: a, cost: 1, limits: limits(1), leaseId: 'y', levels: w.levels })
    t.equal(refused.allowed, false)
    t.equal(refused.scope, 'tenant', 'the tenant refused')
    const org = await s.store.usage(w.orgKeys)
    t.same([org.minute, org.month, org.inFlight], [1, 1, 1], 'the organization holds the admitted request only, and its lease')
  })

  t.test('tenants of one organization share its concurrency; every lease goes back', async t => {
    const s = make(t)
    const w = world(s, limits(100, Infinity, Infinity, 2))
    const a = w.tenant('team-a')
    const b = w.tenant('team-b')
    const l = limits(100, Infinity, Infinity, 5)
    t.equal((await s.store.admit({ keys: a, cost: 1, limits: l, leaseId: 'a1', levels: w.levels })).allowed, true)
    t.equal((await s.store.admit({ keys: b, cost: 1, limits: l, leaseId: 'b1', levels: w.levels })).allowed, true)
    const refused = await s.store.admit({ keys: a, cost: 1, limits: l, leaseId: 'a2', levels: w.levels })
    t.same([refused.reason, refused.scope], ['concurrent_limit_exceeded', 'organization'])
    t.equal(refused.concurrent.limit, 2, 'the concurrency reported is the tightest level’s')
    t.equal((await s.store.usage(a)).inFlight, 1, 'the refused request took no lease at the tenant')
    s.store.release(a, 'a1')
    s.store.release(w.orgKeys, 'a1')
    await settle()
    t.equal((await s.store.admit({ keys: a, cost: 1, limits: l, leaseId: 'a3', levels: w.levels })).allowed, true, 'a slot given back is free')
    for (const [keys, id] of [[a, 'a3'], [b, 'b1']] as const) {
      s.store.release(keys, id)
      s.store.release(w.orgKeys, id)
    }
    await settle()
    t.same([(await s.store.usage(a)).inFlight, (await s.store.usage(b)).inFlight, (await s.store.usage(w.orgKeys)).inFlight], [0, 0, 0])
  })

  t.test('a shared route budget holds every tenant; a refusal there counts nothing at the tenant nor its organization', async t => {
    const s = make(t)
    const w = world(s, limits(100), limits(Infinity, Infinity, Infinity, 2))
    const ids = ['team-a', 'team-b', 'team-c']
    const admitted: string[] = []
    for (const id of ids) {
      const d = await s.store.admit({ keys: w.tenant(id), cost: 1, limits: limits(10), leaseId: 'l-' + id, levels: w.levels })
      if (d.allowed) admitted.push(id)
      else t.same([d.reason, d.scope], ['concurrent_limit_exceeded', 'route'])
    }
    t.same(admitted, ['team-a', 'team-b'])
    t.equal((await s.store.usage(w.tenant('team-c'))).minute, 0, 'the refused tenant counted nothing')
    t.equal((await s.store.usage(w.orgKeys)).minute, 2, 'nor did its organization')
    t.equal((await s.store.usage(w.routeKeys)).inFlight, 2)
    for (const id of admitted) for (const keys of [w.tenant(id), w.orgKeys, w.routeKeys]) s.store.release(keys, 'l-' + id)
    await settle()
    t.equal((await s.store.usage(w.routeKeys)).inFlight, 0, 'back to zero')
  })

  t.test('every level reports its own state; peek takes nothing anywhere', async t => {
    const s = make(t)
    const w = world(s, limits(4, 40), limits(6))
    const a = w.tenant('team-a')
    const d = await s.store.admit({ keys: a, cost: 1, limits: limits(10, 20), leaseId: '', levels: w.levels })
    t.same(d.levels?.map(l => [l.scope, l.minute.remaining, l.hour.remaining]), [['tenant', 9, 19], ['organization', 3, 39], ['route', 5, Infinity]])
    t.same([d.minute.remaining, d.hour.remaining], [3, 19], 'each window reports its tightest level')
    const peeked = await s.store.admit({ keys: a, cost: 2, limits: limits(10, 20), leaseId: '', levels: w.levels, peek: true })
    t.equal(peeked.allowed, true)
    t.equal(peeked.minute.remaining, 1)
    t.same([(await s.store.usage(a)).minute, (await s.store.usage(w.orgKeys)).minute, (await s.store.usage(w.routeKeys)).minute], [1, 1, 1], 'nothing taken by a peek')
  })

  t.test('an organization with a monthly quota: the month of every tenant sums there', async t => {
    const s = make(t)
    const w = world(s, limits(Infinity, Infinity, 3))
    for (const id of ['a', 'b', 'c']) t.equal((await s.store.admit({ keys: w.tenant(id), cost: 1, limits: OPEN, leaseId: '', levels: w.levels })).allowed, true)
    const refused = await s.store.admit({ keys: w.tenant('d'), cost: 1, limits: OPEN, leaseId: '', levels: w.levels })
    t.same([refused.reason, refused.scope], ['quota_exceeded', 'organization'])
    t.equal((await s.store.usage(w.orgKeys)).month, 3)
  })
}
