--[[
usage-2.lua: read what one subject has used, without changing anything.

KEYS[1]  counters hash (see admit-batch.lua)
KEYS[2]  leases hash (lease id → expiry in ms)
ARGV[1]  minute window length in ms
ARGV[2]  hour window length in ms
ARGV[3]  sub-buckets per window (k)
ARGV[4]  '' to read the time from Redis TIME; a time in ms only for replays and tests

Returns { nowMs, minuteUsed, hourUsed, monthUsed, inFlight, monthEndMs }
]]

local winM = tonumber(ARGV[1])
local winH = tonumber(ARGV[2])
local k = tonumber(ARGV[3])
local now
if ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local floor = math.floor

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

local oldestM = floor(now / (winM / k)) - k
local oldestH = floor(now / (winH / k)) - k
local usedM, usedH, usedQ = 0, 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local kind = string.sub(fields[i], 1, 1)
  local idx = tonumber(string.sub(fields[i], 2))
  local n = tonumber(fields[i + 1])
  if kind == 'm' and idx ~= nil and idx >= oldestM then usedM = usedM + n
  elseif kind == 'h' and idx ~= nil and idx >= oldestH then usedH = usedH + n
  elseif kind == 'q' and idx == monthId then usedQ = n
  end
end
local inFlight = 0
for _, expiry in ipairs(redis.call('HVALS', KEYS[2])) do
  if tonumber(expiry) > now then inFlight = inFlight + 1 end
end
return { now, usedM, usedH, usedQ, inFlight, monthEnd }
