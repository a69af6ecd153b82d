--[[
admit-2.lua: decide one request and, when it is admitted, take everything it needs, atomically.

KEYS[1]  counters hash. Fields: m<bucket> (minute window), h<bucket> (hour window), q<yyyymm> (month)
KEYS[2]  leases sorted set. Member: lease id; score: the lease's expiry in ms since the epoch
ARGV[1]  cost: how much the request counts against the windows and the month (integer >= 1)
ARGV[2]  minute limit       (-1: unlimited)
ARGV[3]  hour limit         (-1: unlimited)
ARGV[4]  monthly quota      (-1: unlimited)
ARGV[5]  concurrency limit  (-1: unlimited)
ARGV[6]  lease id, taken when the concurrency limit is not -1
ARGV[7]  lease lifetime in ms: a lease that is never released frees itself after this
ARGV[8]  minute window length in ms
ARGV[9]  hour window length in ms
ARGV[10] sub-buckets per window (k)
ARGV[11] '' to read the time from Redis TIME; a time in ms only for replays and tests

Returns { allowed (0/1), reason, retryAfterMs, nowMs,
          minuteRemaining, minuteResetMs, hourRemaining, hourResetMs,
          monthRemaining, monthResetMs, inFlight }
  reason: 0 none, 1 rate_limit_exceeded, 2 concurrent_limit_exceeded, 3 quota_exceeded
  remaining values are -1 for unlimited limits; *ResetMs are absolute times in ms.

A window of length W is kept as k buckets of W/k. The oldest bucket still overlapping the window
is counted in full until it has wholly left it, so the counted set always covers the true window:
no span of length W can ever hold more than the limit. The price: capacity frees up to W/k late.
]]

local cost = tonumber(ARGV[1])
local limM = tonumber(ARGV[2])
local limH = tonumber(ARGV[3])
local limQ = tonumber(ARGV[4])
local limC = tonumber(ARGV[5])
local leaseTtl = tonumber(ARGV[7])
local winM = tonumber(ARGV[8])
local winH = tonumber(ARGV[9])
local k = tonumber(ARGV[10])

local now
if ARGV[11] ~= '' then
  now = tonumber(ARGV[11])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local floor = math.floor

-- Calendar arithmetic on days since 1970-01-01 (proleptic Gregorian, UTC).
local function days_from_civil (y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local doy = floor((153 * ((m + 9) % 12) + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days (z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end

local year, month = civil_from_days(floor(now / 86400000))
local monthId = year * 100 + month
local nextYear, nextMonth = year, month + 1
if nextMonth == 13 then nextYear, nextMonth = year + 1, 1 end
local monthEnd = days_from_civil(nextYear, nextMonth, 1) * 86400000

local gM, gH = winM / k, winH / k
local curM, curH = floor(now / gM), floor(now / gH)
local oldestM, oldestH = curM - k, curH - k

-- Read every field once: sum what still counts, note what has expired.
local usedM, usedH, usedQ = 0, 0, 0
local byM, byH = {}, {}
local stale = {}
local keepUntil = 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local f = fields[i]
  local kind = string.sub(f, 1, 1)
  local idx = tonumber(string.sub(f, 2))
  local n = tonumber(fields[i + 1])
  if kind == 'm' and idx ~= nil and idx >= oldestM then
    usedM = usedM + n
    byM[idx] = n
    keepUntil = math.max(keepUntil, (idx + k + 1) * gM)
  elseif kind == 'h' and idx ~= nil and idx >= oldestH then
    usedH = usedH + n
    byH[idx] = n
    keepUntil = math.max(keepUntil, (idx + k + 1) * gH)
  elseif kind == 'q' and idx == monthId then
    usedQ = n
    keepUntil = math.max(keepUntil, monthEnd)
  else
    stale[#stale + 1] = f
  end
end

-- Time (ms from now) until `need` units have left a window; -1 if that can never happen.
local function wait_for (byIdx, oldest, cur, need, g)
  local freed = 0
  for idx = oldest, cur do
    local n = byIdx[idx]
    if n ~= nil then
      freed = freed + n
      if freed >= need then return (idx + k + 1) * g - now end
    end
  end
  return -1
end

-- When the oldest counted request leaves the window (now when nothing is counted).
local function next_free (byIdx, oldest, cur, g)
  for idx = oldest, cur do
    if byIdx[idx] ~= nil then return (idx + k + 1) * g end
  end
  return now
end

local reason, retry = 0, 0
if limQ >= 0 and usedQ + cost > limQ then
  reason = 3
  retry = monthEnd - now
end
if limH >= 0 and usedH + cost > limH then
  local w = wait_for(byH, oldestH, curH, usedH + cost - limH, gH)
  if w < 0 then w = winH end
  if reason == 0 then reason = 1 end
  retry = math.max(retry, w)
end
if limM >= 0 and usedM + cost > limM then
  local w = wait_for(byM, oldestM, curM, usedM + cost - limM, gM)
  if w < 0 then w = winM end
  if reason == 0 then reason = 1 end
  retry = math.max(retry, w)
end

local inFlight = 0
if limC >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  inFlight = redis.call('ZCARD', KEYS[2])
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

local allowed = 0
if reason == 0 then
  allowed = 1
  local wrote = false
  if limM >= 0 then
    byM[curM] = redis.call('HINCRBY', KEYS[1], 'm' .. curM, cost)
    usedM = usedM + cost
    keepUntil = math.max(keepUntil, (curM + k + 1) * gM)
    wrote = true
  end
  if limH >= 0 then
    byH[curH] = redis.call('HINCRBY', KEYS[1], 'h' .. curH, cost)
    usedH = usedH + cost
    keepUntil = math.max(keepUntil, (curH + k + 1) * gH)
    wrote = true
  end
  if limQ >= 0 then
    usedQ = redis.call('HINCRBY', KEYS[1], 'q' .. monthId, cost)
    keepUntil = math.max(keepUntil, monthEnd)
    wrote = true
  end
  if #stale > 0 then
    redis.call('HDEL', KEYS[1], unpack(stale))
  end
  -- Relative expiries: right on Redis's clock and on a replay clock alike.
  if wrote then
    redis.call('PEXPIRE', KEYS[1], math.ceil(keepUntil - now))
  end
  if limC >= 0 then
    redis.call('ZADD', KEYS[2], now + leaseTtl, ARGV[6])
    redis.call('PEXPIRE', KEYS[2], leaseTtl)
    inFlight = inFlight + 1
  end
end

local function remaining (limit, used)
  if limit < 0 then return -1 end
  return math.max(0, limit - used)
end

return {
  allowed, reason, math.ceil(retry), now,
  remaining(limM, usedM), math.ceil(next_free(byM, oldestM, curM, gM)),
  remaining(limH, usedH), math.ceil(next_free(byH, oldestH, curH, gH)),
  remaining(limQ, usedQ), monthEnd,
  inFlight
}
