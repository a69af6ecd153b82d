--[[
admit-batch.lua: decide a batch of requests, one after another, and for each one admitted take
everything it needs; the whole batch runs atomically, at one instant of Redis's clock. A batch of
one is the same as a single call; on a Redis Cluster every batch is one request (its keys share a slot).
The caller's side of this format lives in lib/store/admit-protocol.ts.

For item i (i = 1…n, n = (#ARGV - 1) / 3):
KEYS[3i-2]  counters hash of the bucket: the minute and hour windows (fields m… and h…, see
            sliding-window), lX (the leases hash's expiry as last set, ms) and, when a route caps
            the bucket's month, its month (q<yyyymm>)
KEYS[3i-1]  leases hash: lease id -> expiry in ms (see leases)
KEYS[3i]    counters hash whose q<yyyymm> counts the subject's month, across all its buckets (the
            subject's shared counters: KEYS[3i-2] itself for the shared bucket)
ARGV[3i-1]  the item's terms, a JSON array [cost, minuteLimit, hourLimit, monthlyQuota,
            concurrencyLimit, bucketMonthlyQuota] (limits -1 when unlimited; cost >= 0), with a 7th
            element of flags, summed: 1 to peek (decide only: nothing written, no lease taken), 2
            when the next item is a further level of the same request, 4 to keep the subject's
            usage record (below); or '' for an item that only gives leases back
ARGV[3i]    lease id, taken when the concurrency limit is not -1
ARGV[3i+1]  lease ids of KEYS[3i-1] to give back first: '', one id (not starting with '['), or a
            JSON array of ids
ARGV[1]     what the batch shares, a JSON array [k, leaseTtlMs, clockMs, thresholds, retentionMonths]:
            sub-buckets per window, the lifetime of a lease never given back, -1 to read the time
            from Redis TIME (always, but for replays and tests), the quota alerts' thresholds
            (shares of a monthly quota, [] for none) and the months a usage record outlives its month

A request is one item, or several consecutive items (its levels: the subject, its organization, a
shared route budget) joined by flag 2. Every level is checked before any is taken, and the request
is admitted only when all of them admit it: a request refused at any level takes nothing anywhere.

Returns one string with a line per item:
  'reason retryAfterMs nowMs minuteUsed hourUsed monthUsed inFlight bucketMonthUsed' (eight integers)
    reason: 0 admitted, 1 rate_limit_exceeded, 2 concurrent_limit_exceeded, 3 quota_exceeded (this
    level's own verdict: a level that would admit says 0 even when another level refused, so the
    request was admitted only when every line of it says 0);
    *Used: what the window counts after this item (0 for an unlimited window; bucketMonthUsed 0
    without a bucket cap); the caller derives the remaining amounts and reset times from them,
    `now`, k and the month
    then, when the admission took a month count across thresholds: ' q<t>,<t>…' for the
    subject's quota, ' b<t>,…' for the bucket's own cap (each fires once per subject, bucket and
    month: see quota-alerts)
  'R' for an item that only gave leases back
  'E <message>' for an item that failed (a foreign value under its keys), and for every level of its
  request: the other requests still count

Usage records: an admitted item with flag 4 that counts a month writes its subject's record for the
month, <subject base>usage:<yyyymm> (the subject base is KEYS[3i] without its 'all:n'): q (the
subject's month count) and quota, b:<bucket> and bq:<bucket> (a bucket's own cap), and for each
crossing a pending mark p:q:<thresholds> or p:b:<thresholds>:<bucket> = 'used:quota:at', which the
caller deletes once it has appended the event. The record is written once per batch and lives
retentionMonths × 31 days past the month's end; it is a key of the item's slot, not named in KEYS.

Items of one batch often share keys (a busy tenant). Each counters hash is therefore read once per
batch and changed in Lua; its fields are written once, after the last item, and so are the leases
taken and the keys' expiries. Every item still sees what the items before it took: the outcome is
the same as running the items one by one. That holds for what the store sends: costs are whole
numbers, lease ids are unique, and a lease is given back only in a later batch than the one that
took it (its release is known only once the batch has answered).
]]

--- @include "clock"
--- @include "utc-month"
--- @include "sliding-window"
--- @include "leases"
--- @include "quota-alerts"

local shared = cjson.decode(ARGV[1])
local k, leaseTtl = shared[1], shared[2]
if type(k) ~= 'number' or type(leaseTtl) ~= 'number' or type(shared[3]) ~= 'number' then
  return redis.error_reply('ERR admit-batch: malformed shared terms ' .. ARGV[1])
end
local now = clock_now(shared[3])
local minute = window_at('m', 60000, k, now)
local hour = window_at('h', 3600000, k, now)
local monthField, monthEnd = utc_month(now)
local leaseKeepMs = 2 * leaseTtl

-- Numbers as text for a reply or a field: exact for every integer a double holds (tostring is not).
local function text (x) return string.format('%.0f', x) end
-- What every admission of the batch writes or answers alike, formatted once.
local nowText, leaseExpiryText, leaseKeptText = text(now), text(now + leaseTtl), text(now + leaseKeepMs)

-- The batch's view of a counters hash: the fields every admission reads (sums and the month as
-- text, the current buckets as numbers), and whether an admission changed any. A changed hash gets
-- all of them written back at once, after the batch.
local counters = {}
local FIELDS = { 'mS', 'mO', 'hS', 'hO', monthField, minute.field, hour.field, 'lX' }
local NAMES = { 'sumM', 'oldestM', 'sumH', 'oldestH', 'month', 'bucketM', 'bucketH', 'leasesKept' }
-- Quota alerts: the thresholds' fields of this month are read and written with the others.
local thresholds = type(shared[4]) == 'table' and shared[4] or {}
local alertNames
do
  local fields
  fields, alertNames = alert_fields(thresholds, monthField)
  for i = 1, #fields do
    FIELDS[#FIELDS + 1], NAMES[#NAMES + 1] = fields[i], alertNames[i]
  end
end
-- Month counts kept for billing: a record per subject and month (<subject base>usage:<yyyymm>), kept
-- this many months after the month ends (31 days a month, so at least that long).
local retentionMonths = type(shared[5]) == 'number' and shared[5] or 3
local usageSuffix = 'usage:' .. string.sub(monthField, 2)
local usageKeepMs = monthEnd + retentionMonths * 31 * 86400000
local usage = {}

local function counters_open (key)
  local st = counters[key]
  if st == nil then
    local v = redis.call('HMGET', key, unpack(FIELDS))
    st = {
      sumM = v[1], oldestM = v[2], sumH = v[3], oldestH = v[4], month = v[5],
      bucketM = tonumber(v[6]), bucketH = tonumber(v[7]), leasesKept = v[8],
      changed = false, keepUntil = 0
    }
    for i = 9, #FIELDS do st[NAMES[i]] = v[i] end
    counters[key] = st
  end
  return st
end

local function set (st, name, value)
  st[name] = value
  st.changed = true
end

local function counters_write (key, st)
  if not st.changed then return end
  local args, n = {}, 0
  for i = 1, #NAMES do
    local value = st[NAMES[i]]
    if value then
      if type(value) == 'number' then value = text(value) end
      args[n + 1], args[n + 2] = FIELDS[i], value
      n = n + 2
    end
  end
  redis.call('HSET', key, unpack(args, 1, n))
  -- Relative expiry: right on Redis's clock and on a replay clock alike.
  if st.keepUntil > now then redis.call('PEXPIRE', key, math.ceil(st.keepUntil - now)) end
end

local leases = {}

-- One window's part of an admission: its bucket and running sum grow by the cost; when the window
-- has moved on, the buckets that left are deleted now and the oldest index moves with them. Returns
-- the new sum as text, and whether the bucket is new (the key may then have to live longer).
local function take (key, st, win, used, cost, stale, bucketName, sumName, oldestName)
  local bucket = st[bucketName]
  set(st, bucketName, (bucket or 0) + cost)
  set(st, sumName, text(used + cost))
  if stale ~= nil or not st[oldestName] then set(st, oldestName, win.current - k) end
  if stale ~= nil then redis.call('HDEL', key, unpack(stale)) end
  return st[sumName], bucket == nil
end

local decodedTerms = {} -- a batch is mostly a few tiers: each terms string decoded once

-- An item's terms, decoded once per batch; nil for an item that only gives leases back ('') or
-- terms that are not a JSON array.
local function terms_of (termsText)
  if termsText == '' then return nil end
  local terms = decodedTerms[termsText]
  if terms == nil then
    local ok, decoded = pcall(cjson.decode, termsText)
    if not ok or type(decoded) ~= 'table' then return nil end
    terms = decoded
    decodedTerms[termsText] = terms
  end
  return terms
end

-- The flags of an item's terms (their 7th element): 1 peek, 2 the next item is a further level of
-- the same request, 4 keep the subject's usage record (tenants and organizations, not anonymous).
local function flag (terms, bit)
  local flags = terms ~= nil and type(terms[7]) == 'number' and terms[7] or 0
  return math.floor(flags / bit) % 2 == 1
end

local function joins_next (terms)
  return flag(terms, 2)
end

-- The checks of the request being decided, by level position (1: its subject), reused request after
-- request: a level's check is concluded before the next request is checked.
local checks = {}

-- One level of a request, checked: what it holds now and whether the request fits it. Nothing is
-- taken (only buckets that have left a window are found, and expired leases swept). Returns the
-- check, or 'R' for an item that only gives leases back.
local function check (position, countersKey, leasesKey, monthKey, termsText, leaseId, releasing)
  if releasing ~= '' then
    local ids = string.byte(releasing) == 91 and cjson.decode(releasing) or { releasing } -- '[': several
    leases_give_back(leasesKey, leases[leasesKey], ids, leaseKeepMs)
  end
  if termsText == '' then return 'R' end
  local terms = terms_of(termsText)
  if terms == nil then error('malformed terms ' .. termsText) end
  local cost, limM, limH, limQ, limC, limB = terms[1], terms[2], terms[3], terms[4], terms[5], terms[6]

  local st = counters_open(countersKey)
  -- The subject's month is counted in its shared counters; a bucket cap in the bucket's own. (For the
  -- shared bucket both are one hash: a cap there holds the subject's count to it.)
  local mt = st
  if monthKey ~= countersKey then mt = counters_open(monthKey) end
  local usedQ = tonumber(mt.month) or 0
  local usedB = mt == st and usedQ or tonumber(st.month) or 0
  local usedM, staleM, usedH, staleH = 0, nil, 0, nil
  if limM >= 0 then usedM, staleM = window_used(countersKey, minute, st.sumM, st.oldestM) end
  if limH >= 0 then usedH, staleH = window_used(countersKey, hour, st.sumH, st.oldestH) end

  local reason, retry = 0, 0
  if (limQ >= 0 and usedQ + cost > limQ) or (limB >= 0 and usedB + cost > limB) then
    reason, retry = 3, monthEnd - now
  end
  if limH >= 0 and usedH + cost > limH then
    if reason == 0 then reason = 1 end
    retry = math.max(retry, window_wait(countersKey, hour, now, usedH + cost - limH, st.bucketH))
  end
  if limM >= 0 and usedM + cost > limM then
    if reason == 0 then reason = 1 end
    retry = math.max(retry, window_wait(countersKey, minute, now, usedM + cost - limM, st.bucketM))
  end

  local inFlight, ls = 0, nil
  if limC >= 0 then
    ls = leases[leasesKey]
    if ls == nil then
      ls = leases_open(leasesKey)
      leases[leasesKey] = ls
    end
    if ls.count + 1 > limC then
      -- Only a full hash is swept for leases of crashed processes (time in proportion to the
      -- requests in flight, on rejections at the limit).
      local earliest = leases_sweep(leasesKey, ls, now, now + leaseTtl, leaseKeepMs)
      if ls.count + 1 > limC then
        if reason == 0 then reason = 2 end
        -- Slots free as soon as requests finish: a second is a fair hint, and the earliest expiry is
        -- the latest a slot can take to free.
        retry = math.max(retry, earliest == nil and 1000 or math.min(1000, earliest - now))
      end
    end
    inFlight = ls.count
  end
  -- The check goes into the table kept for this level position: the batch allocates none per request.
  local c = checks[position]
  if type(c) ~= 'table' then -- none yet, or 'R' (an item that only gave leases back)
    c = {}
    checks[position] = c
  end
  c.countersKey, c.monthKey, c.leaseId, c.st, c.mt, c.ls = countersKey, monthKey, leaseId, st, mt, ls
  c.cost, c.limM, c.limH, c.limQ, c.limC, c.limB = cost, limM, limH, limQ, limC, limB
  c.peek, c.recorded = flag(terms, 1), flag(terms, 4)
  c.countQ, c.countB = limQ >= 0 or (limB >= 0 and mt == st), limB >= 0 and mt ~= st
  c.usedQ, c.usedB, c.usedM, c.staleM, c.usedH, c.staleH = usedQ, usedB, usedM, staleM, usedH, staleH
  c.reason, c.retry, c.inFlight = reason, retry, inFlight
  return c
end

-- The line of a level not taken: refused (by itself, or with reason 0 by another level of its
-- request), with what it counts now.
local function untaken_line (c)
  return text(c.reason) .. ' ' .. text(math.ceil(c.retry)) .. ' ' .. nowText .. ' ' ..
    (c.limM >= 0 and text(c.usedM) or '0') .. ' ' .. (c.limH >= 0 and text(c.usedH) or '0') .. ' ' .. text(c.usedQ) .. ' ' ..
    text(c.inFlight) .. ' ' .. (c.limB >= 0 and text(c.usedB) or '0')
end

-- What an admission would answer now; nothing is written and no lease is taken.
local function peek_line (c)
  local cost = c.cost
  local textQ = c.countQ and text(c.usedQ + cost) or text(c.usedQ)
  local textB = c.countB and text(c.usedB + cost) or (c.limB >= 0 and textQ or '0')
  return '0 0 ' .. nowText .. ' ' .. (c.limM >= 0 and text(c.usedM + cost) or '0') .. ' ' .. (c.limH >= 0 and text(c.usedH + cost) or '0') ..
    ' ' .. textQ .. ' ' .. text(c.limC >= 0 and c.inFlight + 1 or 0) .. ' ' .. textB
end

-- A field of a subject's usage record for this month, written after the batch (see usageSuffix).
local function usage_set (base, field, value)
  local record = usage[base]
  if record == nil then
    record = {}
    usage[base] = record
  end
  record[field] = value
end

-- Admitted: every counter the level changes goes into the batch's view, written after the batch.
local function commit (c)
  local st, mt, cost, countersKey = c.st, c.mt, c.cost, c.countersKey
  local limM, limH, limC, limB = c.limM, c.limH, c.limC, c.limB
  local countQ, countB = c.countQ, c.countB
  -- Whether this admission counts a month in the bucket's own hash (st).
  local monthHere = countB or (countQ and mt == st)
  local oldestM, oldestH, monthKnown = st.oldestM, st.oldestH, st.month
  local textM, textH, textQ, textB = '0', '0', text(c.usedQ), '0'
  local counted, newField, isNew = false, false, false
  if limM >= 0 then
    textM, newField = take(countersKey, st, minute, c.usedM, cost, c.staleM, 'bucketM', 'sumM', 'oldestM')
    counted = true
  end
  if limH >= 0 then
    textH, isNew = take(countersKey, st, hour, c.usedH, cost, c.staleH, 'bucketH', 'sumH', 'oldestH')
    newField, counted = newField or isNew, true
  end
  if countQ then
    textQ = text(c.usedQ + cost)
    if mt ~= st and not mt.month then
      -- The shared counters, opened for their month only: when the field is new, the hash must last
      -- the month, and as long as its window buckets still need it.
      mt.keepUntil = math.max(mt.keepUntil, monthEnd, window_keep_until(minute, false, mt.oldestM), window_keep_until(hour, false, mt.oldestH))
    end
    set(mt, 'month', textQ)
  end
  if countB then
    textB = text(c.usedB + cost)
    set(st, 'month', textB)
  elseif limB >= 0 then
    textB = textQ -- a cap on the shared bucket: its count is the subject's
  end
  if monthHere then newField, counted = newField or not monthKnown, true end
  -- The month counts into the subject's usage record; thresholds crossed, into the reply (and a
  -- pending mark in the record, until the caller has appended the event).
  local alerts = ''
  if c.recorded and (countQ or countB) then
    local base = string.sub(c.monthKey, 1, -6) -- the subject's shared counters: <base>all:n
    local bucket = countB and string.sub(countersKey, #base + 3, -3) or nil -- <base>b.<bucket>:n
    if countQ then
      usage_set(base, 'q', textQ)
      usage_set(base, 'quota', c.limQ >= 0 and text(c.limQ) or '')
      if c.limQ >= 0 and #thresholds > 0 then
        local crossed = alert_crossings(mt, thresholds, alertNames, c.usedQ, c.usedQ + cost, c.limQ, set)
        if crossed ~= nil then
          alerts = ' q' .. crossed
          usage_set(base, 'p:q:' .. crossed, textQ .. ':' .. text(c.limQ) .. ':' .. nowText)
        end
      end
    end
    if countB then
      usage_set(base, 'b:' .. bucket, textB)
      usage_set(base, 'bq:' .. bucket, text(limB))
      if #thresholds > 0 then
        local crossed = alert_crossings(st, thresholds, alertNames, c.usedB, c.usedB + cost, limB, set)
        if crossed ~= nil then
          alerts = alerts .. ' b' .. crossed
          usage_set(base, 'p:b:' .. crossed .. ':' .. bucket, textB .. ':' .. text(limB) .. ':' .. nowText)
        end
      end
    end
  end
  local inFlight = c.inFlight
  if limC >= 0 then
    -- The leases hash must outlive its newest lease. Its expiry is renewed (to two lifetimes) only
    -- when the hash is new or a lease taken now would outlive it; lX remembers that expiry, and
    -- where there is no counters hash to hold it the leases are renewed on every admission.
    local ls = c.ls
    local kept = tonumber(st.leasesKept)
    if not counted or inFlight == 0 or not kept or now + leaseTtl > kept then
      ls.renew = true
      if counted then set(st, 'leasesKept', leaseKeptText) end
    end
    leases_take(ls, c.leaseId, leaseExpiryText)
    inFlight = ls.count
  end
  -- The key lives as long as its longest-lived field, including fields other tiers wrote (a tenant
  -- whose tier changed). That only grows when a new bucket or month field appears.
  if newField then
    local keep = math.max(window_keep_until(minute, limM >= 0, oldestM), window_keep_until(hour, limH >= 0, oldestH))
    if monthHere or monthKnown then keep = math.max(keep, monthEnd) end
    st.keepUntil = math.max(st.keepUntil, keep)
  end
  return '0 0 ' .. nowText .. ' ' .. textM .. ' ' .. textH .. ' ' .. textQ .. ' ' .. text(inFlight) .. ' ' .. textB .. alerts
end

-- The lines of a request's checked levels (positions 1..count, items first..): each taken when all
-- admitted it, else as it stands.
local function conclude (first, count, admitted, lines)
  for p = 1, count do
    local c, i = checks[p], first + p - 1
    if c == 'R' then
      lines[i] = 'R'
    elseif not admitted then
      lines[i] = untaken_line(c)
    elseif c.peek then
      lines[i] = peek_line(c)
    else
      lines[i] = commit(c)
    end
  end
end

-- One request: items first..last are its levels. Every level is checked before any is taken: the
-- request is admitted only when all of them admit it, and then every level takes it.
local function decide (first, last, lines)
  local failure, admitted = nil, true
  for i = first, last do
    local p = i - first + 1
    local ok, c = pcall(check, p, KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1])
    if not ok then
      failure = c
      break
    end
    if c == 'R' then checks[p] = 'R' elseif c.reason ~= 0 then admitted = false end
  end
  if failure == nil then
    local ok, err = pcall(conclude, first, last - first + 1, admitted, lines)
    if ok then return end
    failure = err
  end
  -- A level that fails fails its whole request.
  local line = 'E ' .. (type(failure) == 'table' and tostring(failure.err) or tostring(failure)):gsub('\n', ' ')
  for i = first, last do lines[i] = line end
end

-- A request of one level (most are): checked and concluded in one protected call.
local function admit_alone (countersKey, leasesKey, monthKey, termsText, leaseId, releasing)
  local c = check(1, countersKey, leasesKey, monthKey, termsText, leaseId, releasing)
  if c == 'R' then return 'R' end
  if c.reason ~= 0 then return untaken_line(c) end
  if c.peek then return peek_line(c) end
  return commit(c)
end

-- Each request on its own: one that fails (a foreign value under its keys) fails alone.
local lines, n = {}, (#ARGV - 1) / 3
local first = 1
while first <= n do
  local last = first
  while last < n and joins_next(terms_of(ARGV[3 * last - 1])) do last = last + 1 end
  if last == first then
    local i = first
    local ok, line = pcall(admit_alone, KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i], ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1])
    lines[i] = ok and line or 'E ' .. (type(line) == 'table' and tostring(line.err) or tostring(line)):gsub('\n', ' ')
  else
    decide(first, last, lines)
  end
  first = last + 1
end
-- What the batch changed, written once per key.
for key, st in pairs(counters) do counters_write(key, st) end
for base, record in pairs(usage) do
  local args, n = {}, 0
  for field, value in pairs(record) do
    args[n + 1], args[n + 2] = field, value
    n = n + 2
  end
  local key = base .. usageSuffix
  -- A record with new fields (new this month, or a new bucket or mark) is given its lifetime.
  if redis.call('HSET', key, unpack(args, 1, n)) > 0 then redis.call('PEXPIRE', key, math.ceil(usageKeepMs - now)) end
end
for key, ls in pairs(leases) do leases_write(key, ls, leaseKeepMs) end
return table.concat(lines, '\n')
