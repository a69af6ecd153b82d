--[[
adjust-batch.lua: charge or give back part of what subjects counted, in their windows and their
month, after the fact (a cost known only when the response is done, a refund). Each item is atomic
like an admission; the items of one call (the settlements of one event-loop turn) run one after
another at one instant of Redis's clock. On a Redis Cluster every call is one item.

For item i (i = 1…n, n = #ARGV - 1):
KEYS[2i-1]  counters hash of the bucket (see admit-batch.lua)
KEYS[2i]    counters hash that counts the subject's month (KEYS[2i-1] for the shared bucket)
ARGV[i+1]   a JSON array [amount, atMs, minute, hour, month, bucketMonth]:
              amount     a whole number: > 0 charges, < 0 gives back
              atMs       when the amount was reserved (a settle): only the buckets and the month
                         that held the reservation change, and a window it has left changes no
                         more. -1 for a refund of what is counted now: newest buckets first, at
                         most what they hold
              minute, hour, month, bucketMonth
                         1 where the change applies (where the reservation was counted), else 0
ARGV[1]     what the call shares, a JSON array [k, clockMs]: sub-buckets per window, and -1 to read
            the time from Redis TIME (a time in ms only for replays and tests)

A refund never takes a bucket or the month below zero (it cannot make capacity a window never had);
a charge may take a window past its limit (a debt, refused until it has left the window). A bucket
or month field that no longer exists (expired with its key) is not charged.

Returns { nowMs, then per item: minuteChanged, hourChanged, monthChanged, bucketMonthChanged }
(signed amounts).
]]

--- @include "clock"
--- @include "utc-month"
--- @include "sliding-window"

local shared = cjson.decode(ARGV[1])
local k = shared[1]
local now = clock_now(shared[2])
local monthField = utc_month(now)
local minute = window_at('m', 60000, k, now)
local hour = window_at('h', 3600000, k, now)

-- Changes one existing field by `by`, at most down to zero; returns the change made.
local function change_field (key, field, by)
  local value = tonumber(redis.call('HGET', key, field))
  if value == nil then return 0 end
  if by < 0 and -by > value then by = -value end
  if by ~= 0 then redis.call('HINCRBY', key, field, by) end
  return by
end

-- One window: the reservation's bucket (a settle), or the newest buckets first (a refund). The
-- running sum follows every change of a bucket.
local function change_window (key, win, amount, at)
  local prefix, changed = win.prefix, 0
  if at >= 0 then
    local index = math.floor(at / win.size)
    if index >= win.current - k and index <= win.current then changed = change_field(key, prefix .. index, amount) end
  else
    local left = -amount
    for index = win.current, win.current - k, -1 do
      if left == 0 then break end
      local taken = -change_field(key, prefix .. index, -left)
      left, changed = left - taken, changed - taken
    end
  end
  if changed ~= 0 then redis.call('HINCRBY', key, prefix .. 'S', changed) end
  return changed
end

-- The month: the reservation's month while it is still the current one.
local function change_month (key, amount, at)
  if at >= 0 and utc_month(at) ~= monthField then return 0 end
  return change_field(key, monthField, amount)
end

local reply = { now }
for i = 1, #ARGV - 1 do
  local counters, month = KEYS[2 * i - 1], KEYS[2 * i]
  local terms = cjson.decode(ARGV[i + 1])
  local amount, at = terms[1], terms[2]
  local changedM = terms[3] == 1 and change_window(counters, minute, amount, at) or 0
  local changedH = terms[4] == 1 and change_window(counters, hour, amount, at) or 0
  local changedQ = terms[5] == 1 and change_month(month, amount, at) or 0
  local changedB = 0
  if terms[6] == 1 then
    -- On the shared bucket the bucket's month is the subject's: changed once.
    if month == counters and terms[5] == 1 then changedB = changedQ else changedB = change_month(counters, amount, at) end
  end
  local base = 1 + 4 * (i - 1)
  reply[base + 1], reply[base + 2], reply[base + 3], reply[base + 4] = changedM, changedH, changedQ, changedB
end
return reply
