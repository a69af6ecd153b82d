--[[
admit-batch.lua: decide a batch of requests, one after another, and for each one admitted take
everything it needs; the whole batch runs atomically, at one instant of Redis's clock. A batch of
one is the same as a single call; on a Redis Cluster every batch is one item (its keys share a slot).

For item i (i = 1…n, n = (#ARGV - 1) / 3):
KEYS[2i-1]  counters hash. Fields: m<bucket> / h<bucket> (minute / hour window buckets), mS / hS
            (their running sums), mO / hO (the oldest bucket index that may still hold a field),
            q<yyyymm> (month), lX (the leases hash's expiry as last set, ms)
KEYS[2i]    leases hash. Field: lease id; value: the lease's expiry in ms since the epoch (a hash, not
            a sorted set: taking a lease is then one field appended, not an ordered insert)
ARGV[3i-1]  the request's terms, a JSON array [cost, minuteLimit, hourLimit, monthlyQuota,
            concurrencyLimit] (limits -1 when unlimited; cost >= 1), or '' for an item that only
            gives leases back
ARGV[3i]    lease id, taken when the concurrency limit is not -1
ARGV[3i+1]  lease ids of KEYS[2i] to give back first: '', one id (not starting with '['), or a JSON
            array of ids

ARGV[1]     what the batch shares, a JSON array:
              [k, leaseTtlMs, clockMs, minuteBucket, hourBucket, "m<minuteBucket>",
               "h<hourBucket>", "q<yyyymm>", monthStartMs, monthEndMs]
            k: sub-buckets per window; leaseTtlMs: a lease never released frees itself after this;
            clockMs: -1 to read the time from Redis TIME (always, but for replays and tests). The
            rest are the caller's guesses from its own clock (optional), used only where Redis's
            time agrees with them: they spare the script number formatting and calendar arithmetic.

Returns one string with a line per item:
  'reason retryAfterMs nowMs minuteUsed hourUsed monthUsed inFlight' (seven integers)
    reason: 0 admitted, 1 rate_limit_exceeded, 2 concurrent_limit_exceeded, 3 quota_exceeded;
    *Used: what the window counts after this item (0 for an unlimited one); the caller derives the
    remaining amounts and reset times from them, `now`, k and the month
  'R' for an item that only gave leases back
  'E <message>' for an item that failed (a foreign value under its keys): the others still count

A window of length W is kept as k buckets of W/k. The oldest bucket still overlapping the window
is counted in full until it has wholly left it, so the counted set always covers the true window:
no span of length W can ever hold more than the limit. The price: capacity frees up to W/k late.
Each window keeps a running sum, so a request reads eight fields, not every bucket, and writes them
back in one HSET; buckets that left the window are subtracted and deleted when the window moves on.

Items of one batch often share keys (a busy tenant). Each counters hash is therefore read once per
batch and changed in Lua; its fields are written once, after the last item, and so are the leases
taken and the keys' expiries. Every item still sees what the items before it took: the outcome is
the same as running the items one by one. A read that goes around this state (bucket values for a
Retry-After, the whole leases hash at the concurrency limit) adds what the batch holds unwritten.
That holds for what the store sends: costs are whole numbers, lease ids are unique, and a lease is
given back only in a later batch than the one that took it (its release is known only once the
batch has answered).
]]

local WIN_M, WIN_H = 60000, 3600000
local DIGITS = { '0', '1', '2', '3', '4', '5', '6', '7', '8', '9' }
local floor, tonumber, max, min, unpack = math.floor, tonumber, math.max, math.min, unpack

local shared = cjson.decode(ARGV[1])
local k, leaseTtl, clock = shared[1], shared[2], shared[3]
if type(k) ~= 'number' or type(leaseTtl) ~= 'number' or type(clock) ~= 'number' then
  return redis.error_reply('ERR admit-batch: malformed shared terms ' .. ARGV[1])
end

local now
if clock >= 0 then
  now = clock
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
end

-- Turning a number into text is the dearest step of an item (about 0.3 µs each, whether Redis
-- does it for a command argument or string.format for the reply), so every number an item sends
-- is formatted once, and what all items share once per batch. %.0f, not %d or tostring: exact for
-- every integer a double holds, whatever its size.
local format = string.format
local function text (x) return format('%.0f', x) end
local nowText = text(now)
local leaseExpiryText, leaseKeepText -- formatted on first use

local gM, gH = WIN_M / k, WIN_H / k
local curM, curH = floor(now / gM), floor(now / gH)
-- Field names and the month from the caller's guesses when Redis's time agrees (no number
-- formatting, no calendar arithmetic).
local nameM = shared[4] == curM and shared[6] or 'm' .. curM
local nameH = shared[5] == curH and shared[7] or 'h' .. curH
local monthField, monthEnd
if shared[8] and shared[9] <= now and now < shared[10] then
  monthField, monthEnd = shared[8], shared[10]
else
  -- The UTC calendar month of `now` (civil-from-days arithmetic, proleptic Gregorian).
  local z = floor(now / 86400000) + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local day = doy - floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  local monthDays = ({ 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 })[month]
  if month == 2 and year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0) then monthDays = 29 end
  monthField = 'q' .. (year * 100 + month)
  monthEnd = (z - 719468 - day + 1 + monthDays) * 86400000
end

-- A window's use: its running sum less the buckets that have wholly left it. Every bucket field
-- lies in [oldest, oldest + k], so at most k + 1 names are looked at, and only when the window has
-- moved on since the last write. Returns the use and the names of the buckets that left.
local function window (counters, prefix, sum, oldest, cur)
  local used = tonumber(sum) or 0
  local o = tonumber(oldest)
  if o == nil or o >= cur - k then return used, nil end
  local names = {}
  for idx = o, min(cur - k - 1, o + k) do names[#names + 1] = prefix .. idx end
  local values = redis.call('HMGET', counters, unpack(names))
  for i = 1, #names do
    if values[i] then used = used - tonumber(values[i]) end
  end
  return used, names
end

-- Time (ms from now) until `need` units have left a window; the window's length if never. The
-- current bucket's value comes from the batch's state (`current`), which may not be written yet.
local function wait_for (counters, prefix, cur, g, need, length, current)
  local names = {}
  for idx = cur - k, cur do names[#names + 1] = prefix .. idx end
  local values = redis.call('HMGET', counters, unpack(names))
  values[#names] = current
  local freed = 0
  for i = 1, #names do
    if values[i] then
      freed = freed + tonumber(values[i])
      if freed >= need then return (cur + i) * g - now end -- bucket cur - k + i - 1 leaves then
    end
  end
  return length
end

-- The batch's state of a counters hash is the reply of its first read: the eight head fields (see
-- HEAD), then at CHANGED + i whether field i changed, then at KEEP_UNTIL the expiry the key needs.
-- Sums and the month are kept as text (the reply needs them so), buckets as numbers (formatted
-- once, when written). Few tables per item: a batch of many tenants must not pay for the state.
local HEAD_SUM_M, HEAD_OLDEST_M, HEAD_SUM_H, HEAD_OLDEST_H, HEAD_MONTH, HEAD_BUCKET_M, HEAD_BUCKET_H, HEAD_LEASES_KEPT = 1, 2, 3, 4, 5, 6, 7, 8
local HEAD = { 'mS', 'mO', 'hS', 'hO', monthField, nameM, nameH, 'lX' }
local CHANGED, KEEP_UNTIL = 8, 17
-- Written in this order: a new hash then holds the fields every request reads first, where a
-- small hash (a listpack) finds them soonest; the current buckets come last.
local WRITE_ORDER = { 1, 2, 3, 4, 5, 8, 6, 7 }
local countersState = {}

local function counters_state (counters)
  local st = countersState[counters]
  if st == nil then
    st = redis.call('HMGET', counters, unpack(HEAD))
    st[HEAD_BUCKET_M] = tonumber(st[HEAD_BUCKET_M]) or false
    st[HEAD_BUCKET_H] = tonumber(st[HEAD_BUCKET_H]) or false
    for i = CHANGED + 1, CHANGED + 8 do st[i] = false end
    st[KEEP_UNTIL] = 0
    countersState[counters] = st
  end
  return st
end

-- The batch's state of a leases hash: how many it holds (HLEN, read on first use), whether its
-- expiry must be renewed, then the leases taken in this batch and not written yet (id, expiry...).
local LEASE_COUNT, LEASE_RENEW, LEASE_TAKEN = 1, 2, 3 -- LEASE_TAKEN: how many values follow
local leasesState = {}

local function leases_state (leases)
  local ls = leasesState[leases]
  if ls == nil then
    ls = { redis.call('HLEN', leases), false, 0 }
    leasesState[leases] = ls
  end
  return ls
end

local scratch = {} -- one field list, reused for every write

local function write_counters (counters, st)
  local n = 0
  for j = 1, #WRITE_ORDER do
    local i = WRITE_ORDER[j]
    if st[CHANGED + i] then
      local value = st[i]
      if type(value) == 'number' then value = text(value) end
      scratch[n + 1], scratch[n + 2] = HEAD[i], value
      n = n + 2
    end
  end
  if n > 0 then redis.call('HSET', counters, unpack(scratch, 1, n)) end
  -- Relative expiry: right on Redis's clock and on a replay clock alike.
  if st[KEEP_UNTIL] > now then redis.call('PEXPIRE', counters, math.ceil(st[KEEP_UNTIL] - now)) end
end

-- Runs a hash command over list[first..last] in chunks (unpack has a stack limit, and a full
-- leases hash may be large); returns the sum of its replies. Chunks are even: HSET pairs hold.
local function chunked (command, key, list, first, last)
  local total = 0
  for i = first, last, 1000 do total = total + redis.call(command, key, unpack(list, i, min(i + 999, last))) end
  return total
end

local function write_leases (leases, ls)
  chunked('HSET', leases, ls, LEASE_TAKEN + 1, LEASE_TAKEN + ls[LEASE_TAKEN])
  if ls[LEASE_RENEW] then redis.call('PEXPIRE', leases, 2 * leaseTtl) end
  ls[LEASE_TAKEN], ls[LEASE_RENEW] = 0, false
end

-- One window's part of an admission: its bucket, its running sum, and its oldest bucket when that
-- moves (the buckets that left are deleted now; the rest is written after the batch). Returns
-- whether the bucket is new (the key's expiry may then have to grow) and the new sum as text.
local function take (counters, st, bucketAt, sumAt, oldestAt, used, cost, stale, first)
  local sum = text(used + cost)
  local bucket = st[bucketAt]
  st[bucketAt], st[sumAt] = (bucket or 0) + cost, sum
  st[CHANGED + bucketAt], st[CHANGED + sumAt] = true, true
  if stale ~= nil or not st[oldestAt] then
    st[oldestAt], st[CHANGED + oldestAt] = first, true
  end
  if stale ~= nil then redis.call('HDEL', counters, unpack(stale)) end
  return not bucket, sum
end

-- Gives leases back (a release, or the sweep of expired ones); returns how many were there. Emptying
-- the hash deletes it, and its expiry with it: when that may happen, the leases this batch took (not
-- written yet) go in first, as one by one they would have been there already.
local function give_back (leases, ids)
  local ls = leasesState[leases]
  if ls ~= nil and ls[LEASE_TAKEN] > 0 and ls[LEASE_COUNT] - ls[LEASE_TAKEN] / 2 <= #ids then write_leases(leases, ls) end
  local deleted = chunked('HDEL', leases, ids, 1, #ids)
  if ls ~= nil then ls[LEASE_COUNT] = ls[LEASE_COUNT] - deleted end
  return deleted
end

-- Terms decoded once per distinct string in this batch (a batch is mostly a few tiers).
local decoded = {}

local function admit (counters, leases, termsText, leaseId, releasing)
  if releasing ~= '' then
    give_back(leases, string.byte(releasing) == 91 and cjson.decode(releasing) or { releasing }) -- '[': several ids
  end
  if termsText == '' then return 'R' end
  local terms = decoded[termsText]
  if terms == nil then
    terms = cjson.decode(termsText)
    decoded[termsText] = terms
  end
  local cost, limM, limH, limQ, limC = terms[1], terms[2], terms[3], terms[4], terms[5]
  -- The reply's sums as text: '0' for an unlimited window, else set where they are formatted.
  local textM, textH, textQ = '0', '0', nil

  -- Running sums and oldest live buckets, this month, the current buckets, the leases hash's expiry.
  local head = counters_state(counters)
  local usedQ = tonumber(head[HEAD_MONTH]) or 0
  local usedM, staleM, usedH, staleH = 0, nil, 0, nil
  if limM >= 0 then usedM, staleM = window(counters, 'm', head[HEAD_SUM_M], head[HEAD_OLDEST_M], curM) end
  if limH >= 0 then usedH, staleH = window(counters, 'h', head[HEAD_SUM_H], head[HEAD_OLDEST_H], curH) end

  local reason, retry = 0, 0
  if limQ >= 0 and usedQ + cost > limQ then
    reason = 3
    retry = monthEnd - now
  end
  if limH >= 0 and usedH + cost > limH then
    if reason == 0 then reason = 1 end
    retry = max(retry, wait_for(counters, 'h', curH, gH, usedH + cost - limH, WIN_H, head[HEAD_BUCKET_H]))
  end
  if limM >= 0 and usedM + cost > limM then
    if reason == 0 then reason = 1 end
    retry = max(retry, wait_for(counters, 'm', curM, gM, usedM + cost - limM, WIN_M, head[HEAD_BUCKET_M]))
  end

  local inFlight, ls = 0, nil
  if limC >= 0 then
    ls = leases_state(leases)
    inFlight = ls[LEASE_COUNT]
    if inFlight + 1 > limC then
      -- Only a full hash needs its expired leases (crashed processes) dropped, and its earliest
      -- expiry for the hint. Values first: their names are read only when some lease has expired.
      -- (This costs time in proportion to the requests in flight, on rejections at the limit.)
      local oldest, stale = nil, 0
      for _, value in ipairs(redis.call('HVALS', leases)) do
        local expiry = tonumber(value)
        if expiry <= now then
          stale = stale + 1
        elseif oldest == nil or expiry < oldest then
          oldest = expiry
        end
      end
      -- Leases this batch took are not written yet: they all expire at now + leaseTtl.
      if ls[LEASE_TAKEN] > 0 and (oldest == nil or now + leaseTtl < oldest) then oldest = now + leaseTtl end
      if stale > 0 then
        local all, expired = redis.call('HGETALL', leases), {}
        for i = 1, #all, 2 do
          if tonumber(all[i + 1]) <= now then expired[#expired + 1] = all[i] end
        end
        inFlight = inFlight - give_back(leases, expired)
      end
      if inFlight + 1 > limC then
        if reason == 0 then reason = 2 end
        -- Slots free as soon as requests finish; a second is a fair hint, and the oldest lease's
        -- expiry is the latest a slot can take to free.
        local w = 1000
        if oldest ~= nil then w = min(w, oldest - now) end
        retry = max(retry, w)
      end
    end
  end

  if reason == 0 then
    -- Every counter this admission changes goes into the batch's state, written after the batch.
    local oldestM, oldestH, monthKnown = head[HEAD_OLDEST_M], head[HEAD_OLDEST_H], head[HEAD_MONTH]
    local counted, extend = false, false
    if limM >= 0 then
      extend, textM = take(counters, head, HEAD_BUCKET_M, HEAD_SUM_M, HEAD_OLDEST_M, usedM, cost, staleM, curM - k)
      counted = true
    end
    if limH >= 0 then
      local newBucket
      newBucket, textH = take(counters, head, HEAD_BUCKET_H, HEAD_SUM_H, HEAD_OLDEST_H, usedH, cost, staleH, curH - k)
      extend = extend or newBucket
      counted = true
    end
    if limQ >= 0 then
      usedQ = usedQ + cost
      textQ = text(usedQ)
      head[HEAD_MONTH], head[CHANGED + HEAD_MONTH] = textQ, true
      extend = extend or not monthKnown
      counted = true
    end
    if limC >= 0 then
      leaseExpiryText = leaseExpiryText or text(now + leaseTtl)
      local n = ls[LEASE_TAKEN]
      ls[LEASE_TAKEN + n + 1], ls[LEASE_TAKEN + n + 2], ls[LEASE_TAKEN] = leaseId, leaseExpiryText, n + 2
      -- The leases hash must outlive its newest lease. Its expiry is renewed (to two lifetimes) only
      -- when the hash is new or a lease taken now would outlive it; lX remembers that expiry, and
      -- where there is no counters hash to hold it the leases are renewed on every admission. Two
      -- lifetimes from now is never shorter than an expiry set before (lX, or a renewal's).
      local setExpiry = tonumber(head[HEAD_LEASES_KEPT])
      if not counted or inFlight == 0 or not setExpiry or now + leaseTtl > setExpiry then
        ls[LEASE_RENEW] = true
        if counted then
          leaseKeepText = leaseKeepText or text(now + 2 * leaseTtl)
          head[HEAD_LEASES_KEPT], head[CHANGED + HEAD_LEASES_KEPT] = leaseKeepText, true
        end
      end
      inFlight = inFlight + 1
      ls[LEASE_COUNT] = inFlight
    end
    -- The key lives as long as its longest-lived field, including fields other tiers wrote (a
    -- tenant whose tier changed). That only grows when a new bucket or month field appears.
    if extend then
      local keepUntil = 0
      if limM >= 0 then keepUntil = (curM + k + 1) * gM end
      if limH >= 0 then keepUntil = max(keepUntil, (curH + k + 1) * gH) end
      if limQ >= 0 or monthKnown then keepUntil = max(keepUntil, monthEnd) end
      if oldestM then keepUntil = max(keepUntil, (tonumber(oldestM) + 2 * k + 1) * gM) end
      if oldestH then keepUntil = max(keepUntil, (tonumber(oldestH) + 2 * k + 1) * gH) end
      head[KEEP_UNTIL] = max(head[KEEP_UNTIL], keepUntil)
    end
  end

  -- Sums already formatted for the write are reused; an unlimited window counts '0'.
  if reason ~= 0 then
    textM = limM >= 0 and text(usedM) or '0'
    textH = limH >= 0 and text(usedH) or '0'
    textQ = text(usedQ)
  end
  return (reason == 0 and '0 0 ' or text(reason) .. ' ' .. text(math.ceil(retry)) .. ' ') .. nowText .. ' ' ..
    textM .. ' ' .. textH .. ' ' .. (textQ or text(usedQ)) .. ' ' .. (inFlight < 10 and DIGITS[inFlight + 1] or text(inFlight))
end

-- Each item on its own: one that fails (a foreign value under its keys) fails alone.
local lines = {}
for i = 1, (#ARGV - 1) / 3 do
  local ok, line = pcall(admit, KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1])
  if not ok then
    line = 'E ' .. (type(line) == 'table' and tostring(line.err) or tostring(line)):gsub('\n', ' ')
  end
  lines[i] = line
end
-- What the batch changed, written once per key.
for counters, st in pairs(countersState) do write_counters(counters, st) end
for leases, ls in pairs(leasesState) do write_leases(leases, ls) end
return table.concat(lines, '\n')
