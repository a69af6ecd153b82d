--[[
usage-2.lua: read what one subject has used in one bucket, without changing anything.

KEYS[1]  the subject's hash for the bucket (see admit-batch.lua)
KEYS[2]  the same bucket's counters under key layout v1 (the month's count, until it is carried over)
ARGV[1]  sub-buckets per window (k)
ARGV[2]  '' to read the time from Redis TIME; a time in ms only for replays and tests

Returns { nowMs, minuteUsed, hourUsed, monthUsed, inFlight, monthEndMs }
]]

--- @include "clock"
--- @include "utc-month"
--- @include "sliding-window"
--- @include "leases"

local k = tonumber(ARGV[1])
local now = clock_now(ARGV[2] == '' and -1 or tonumber(ARGV[2]))
local monthId, monthEnd = utc_month(now)
local monthField = 'q' .. monthId
local M, H = window_at('m', 60000, k, now), window_at('h', 3600000, k, now)
local f = redis.call('HMGET', KEYS[1], M.sum, M.oldest, H.sum, H.oldest, monthField)
local usedQ = tonumber(f[5]) or tonumber(redis.call('HGET', KEYS[2], monthField)) or 0
return { now, window_used(KEYS[1], M, f[1], f[2]), window_used(KEYS[1], H, f[3], f[4]), usedQ, leases_live(KEYS[1], now), monthEnd }
