--[[
admit-2.lua: decide one request and, when it is admitted, take everything it needs, atomically.

KEYS[1]  counters hash. Fields: m<bucket> / h<bucket> (minute / hour window buckets), mS / hS (their
         running sums), mO / hO (the oldest bucket index that may still hold a field), q<yyyymm>
         (month), lX (until when the leases set's expiry needs no renewal, ms)
KEYS[2]  leases sorted set. Member: lease id; score: the lease's expiry in ms since the epoch
ARGV[1]  the request's terms and the caller's clock guesses, as one JSON array (one argument, read
         in C by cjson, instead of a dozen):
           [cost, minuteLimit, hourLimit, monthlyQuota, concurrencyLimit, k, leaseTtlMs,
            minuteBucket, hourBucket, "m<minuteBucket>", "h<hourBucket>", "q<yyyymm>", monthStartMs, monthEndMs]
         cost: how much the request counts against the windows and the month (>= 1); limits are -1
         when unlimited; k: sub-buckets per window; leaseTtlMs: a lease never released frees itself
         after this. The guesses (from the caller's clock; optional) are used only where Redis's time
         agrees with them: they spare the script number formatting and calendar arithmetic
ARGV[2]  lease id, taken when the concurrency limit is not -1
ARGV[3]  '' to read the time from Redis TIME; a time in ms only for replays and tests
ARGV[4…] lease ids of KEYS[2] to give back first (releases that waited for this call)

Returns 'reason retryAfterMs nowMs minuteUsed hourUsed monthUsed inFlight': seven integers in one string
  reason: 0 admitted, 1 rate_limit_exceeded, 2 concurrent_limit_exceeded, 3 quota_exceeded
  *Used: what the window counts after this call (0 for an unlimited one); the caller derives the
  remaining amounts and reset times from them, `now`, k and the month.

A window of length W is kept as k buckets of W/k. The oldest bucket still overlapping the window
is counted in full until it has wholly left it, so the counted set always covers the true window:
no span of length W can ever hold more than the limit. The price: capacity frees up to W/k late.
Each window keeps a running sum, so a request reads eight fields, not every bucket, and writes them
back in one HSET; buckets that left the window are subtracted and deleted when the window moves on.
]]

local WIN_M, WIN_H = 60000, 3600000
local floor, tonumber = math.floor, tonumber

local terms = cjson.decode(ARGV[1])
local cost, limM, limH, limQ, limC, k, leaseTtl = terms[1], terms[2], terms[3], terms[4], terms[5], terms[6], terms[7]
if type(leaseTtl) ~= 'number' then return redis.error_reply('ERR admit-2: malformed terms ' .. ARGV[1]) end

local now
if ARGV[3] ~= '' then
  now = tonumber(ARGV[3])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + floor(tonumber(t[2]) / 1000)
end

local gM, gH = WIN_M / k, WIN_H / k
local curM, curH = floor(now / gM), floor(now / gH)
local monthField, monthEnd
-- Field names and the month from the caller's guesses when Redis's time agrees (no number
-- formatting, no calendar arithmetic).
local nameM = terms[8] == curM and terms[10] or 'm' .. curM
local nameH = terms[9] == curH and terms[11] or 'h' .. curH
if terms[12] and terms[13] <= now and now < terms[14] then
  monthField, monthEnd = terms[12], terms[14]
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

-- Running sums and oldest live buckets, this month, the current buckets, the leases set's renewal.
local head = redis.call('HMGET', KEYS[1], 'mS', 'mO', 'hS', 'hO', monthField, nameM, nameH, 'lX')
local usedQ = tonumber(head[5]) or 0

-- A window's use: its running sum less the buckets that have wholly left it. Every bucket field
-- lies in [oldest, oldest + k], so at most k + 1 names are looked at, and only when the window has
-- moved on since the last write. Returns the use and the names of the buckets that left.
local function window (prefix, sum, oldest, cur)
  local used = tonumber(sum) or 0
  local o = tonumber(oldest)
  if o == nil or o >= cur - k then return used, nil end
  local names = {}
  for idx = o, math.min(cur - k - 1, o + k) do names[#names + 1] = prefix .. idx end
  local values = redis.call('HMGET', KEYS[1], unpack(names))
  for i = 1, #names do
    if values[i] then used = used - tonumber(values[i]) end
  end
  return used, names
end

-- Time (ms from now) until `need` units have left a window; the window's length if never.
local function wait_for (prefix, cur, g, need, length)
  local names = {}
  for idx = cur - k, cur do names[#names + 1] = prefix .. idx end
  local values = redis.call('HMGET', KEYS[1], unpack(names))
  local freed = 0
  for i = 1, #names do
    if values[i] then
      freed = freed + tonumber(values[i])
      if freed >= need then return (cur - k + i + k) * g - now end
    end
  end
  return length
end

local usedM, staleM, usedH, staleH = 0, nil, 0, nil
if limM >= 0 then usedM, staleM = window('m', head[1], head[2], curM) end
if limH >= 0 then usedH, staleH = window('h', head[3], head[4], curH) end

local reason, retry = 0, 0
if limQ >= 0 and usedQ + cost > limQ then
  reason = 3
  retry = monthEnd - now
end
if limH >= 0 and usedH + cost > limH then
  if reason == 0 then reason = 1 end
  retry = math.max(retry, wait_for('h', curH, gH, usedH + cost - limH, WIN_H))
end
if limM >= 0 and usedM + cost > limM then
  if reason == 0 then reason = 1 end
  retry = math.max(retry, wait_for('m', curM, gM, usedM + cost - limM, WIN_M))
end

if #ARGV > 3 then redis.call('ZREM', KEYS[2], unpack(ARGV, 4)) end

local inFlight = 0
if limC >= 0 then
  inFlight = redis.call('ZCARD', KEYS[2])
  if inFlight + 1 > limC then
    -- Only a full set needs its expired leases (crashed processes) dropped.
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
    inFlight = redis.call('ZCARD', KEYS[2])
  end
  if inFlight + 1 > limC then
    if reason == 0 then reason = 2 end
    -- Slots free as soon as requests finish; a second is a fair hint, and the oldest lease's expiry
    -- is the latest a slot can take to free.
    local w = 1000
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    if oldest[2] ~= nil then w = math.min(w, tonumber(oldest[2]) - now) end
    retry = math.max(retry, w)
  end
end

if reason == 0 then
  -- Every counter this admission changes, written back in one HSET.
  local fields = {}
  local extend = false
  -- One window's part: its bucket, its sum, its oldest bucket when that moves; true for a new bucket.
  local function take (name, bucket, prefix, used, oldest, stale, cur)
    fields[#fields + 1] = name
    fields[#fields + 1] = (tonumber(bucket) or 0) + cost
    fields[#fields + 1] = prefix .. 'S'
    fields[#fields + 1] = used + cost
    if stale ~= nil or not oldest then
      fields[#fields + 1] = prefix .. 'O'
      fields[#fields + 1] = cur - k
    end
    if stale ~= nil then redis.call('HDEL', KEYS[1], unpack(stale)) end
    return not bucket
  end
  if limM >= 0 then
    extend = take(nameM, head[6], 'm', usedM, head[2], staleM, curM) or extend
    usedM = usedM + cost
  end
  if limH >= 0 then
    extend = take(nameH, head[7], 'h', usedH, head[4], staleH, curH) or extend
    usedH = usedH + cost
  end
  if limQ >= 0 then
    usedQ = usedQ + cost
    fields[#fields + 1] = monthField
    fields[#fields + 1] = usedQ
    extend = extend or not head[5]
  end
  if limC >= 0 then
    redis.call('ZADD', KEYS[2], now + leaseTtl, ARGV[2])
    -- The set must outlive its newest lease. Its expiry is renewed (to two lifetimes) only when
    -- the set is new or a lease taken now would outlive it; lX remembers that expiry, and where
    -- there is no counters hash to hold it the set is renewed on every admission.
    local setExpiry = tonumber(head[8])
    if #fields == 0 then
      redis.call('PEXPIRE', KEYS[2], leaseTtl)
    elseif inFlight == 0 or not setExpiry or now + leaseTtl > setExpiry then
      redis.call('PEXPIRE', KEYS[2], 2 * leaseTtl)
      fields[#fields + 1] = 'lX'
      fields[#fields + 1] = now + 2 * leaseTtl
    end
    inFlight = inFlight + 1
  end
  if #fields > 0 then redis.call('HSET', KEYS[1], unpack(fields)) end
  -- The key lives as long as its longest-lived field, including fields other tiers wrote (a
  -- tenant whose tier changed). That only grows when a new bucket or month field appears.
  if extend then
    local keepUntil = 0
    if limM >= 0 then keepUntil = (curM + k + 1) * gM end
    if limH >= 0 then keepUntil = math.max(keepUntil, (curH + k + 1) * gH) end
    if limQ >= 0 or head[5] then keepUntil = math.max(keepUntil, monthEnd) end
    if head[2] then keepUntil = math.max(keepUntil, (tonumber(head[2]) + 2 * k + 1) * gM) end
    if head[4] then keepUntil = math.max(keepUntil, (tonumber(head[4]) + 2 * k + 1) * gH) end
    -- Relative expiry: right on Redis's clock and on a replay clock alike.
    if keepUntil > now then redis.call('PEXPIRE', KEYS[1], math.ceil(keepUntil - now)) end
  end
end

-- One status line, not an array: a client reads one string far more cheaply than seven integers.
return string.format('%d %d %d %d %d %d %d', reason, math.ceil(retry), now, usedM, usedH, usedQ, inFlight)
