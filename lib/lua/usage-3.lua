--[[
usage-3.lua: read what one subject has used, without changing anything.

KEYS[1]  counters hash of the bucket (see admit-batch.lua)
KEYS[2]  leases hash (lease id -> expiry in ms)
KEYS[3]  counters hash that counts the subject's month (KEYS[1] for the shared bucket)
ARGV[1]  sub-buckets per window (k)
ARGV[2]  '' to read the time from Redis TIME; a time in ms only for replays and tests

Returns { nowMs, minuteUsed, hourUsed, monthUsed, inFlight, monthEndMs }
]]

--- @include "clock"
--- @include "utc-month"
--- @include "sliding-window"

local k = tonumber(ARGV[1])
local now = clock_now(tonumber(ARGV[2]))
local minute = window_at('m', 60000, k, now)
local hour = window_at('h', 3600000, k, now)
local monthField, monthEnd = utc_month(now)

local f = redis.call('HMGET', KEYS[1], 'mS', 'mO', 'hS', 'hO')
local usedM = window_used(KEYS[1], minute, f[1], f[2])
local usedH = window_used(KEYS[1], hour, f[3], f[4])
local usedQ = tonumber(redis.call('HGET', KEYS[3], monthField)) or 0
local inFlight = 0
for _, expiry in ipairs(redis.call('HVALS', KEYS[2])) do
  if tonumber(expiry) > now then inFlight = inFlight + 1 end
end
return { now, usedM, usedH, usedQ, inFlight, monthEnd }
