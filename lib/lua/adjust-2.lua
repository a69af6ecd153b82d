--[[
adjust-2.lua: charge or give back part of what one subject counted, in its windows and its month,
after the fact (a cost known only when the response is done, a refund). Atomic like admission.

KEYS[1]  counters hash of the bucket (see admit-batch.lua)
KEYS[2]  counters hash that counts the subject's month (KEYS[1] for the shared bucket)
ARGV[1]  a JSON array [k, clockMs, amount, atMs, minute, hour, month, bucketMonth]:
           k          sub-buckets per window
           clockMs    -1 to read the time from Redis TIME; a time in ms only for replays and tests
           amount     a whole number: > 0 charges, < 0 gives back
           atMs       when the amount was reserved (a settle): only the buckets and the month that
                      held the reservation change, and a window it has left changes no more. -1 for
                      a refund of what is counted now: newest buckets first, at most what they hold
           minute, hour, month, bucketMonth
                      1 where the change applies (where the reservation was counted), else 0

A refund never takes a bucket or the month below zero (it cannot make capacity a window never had);
a charge may take a window past its limit (a debt, refused until it has left the window). A bucket
or month field that no longer exists (expired with its key) is not charged.

Returns { nowMs, minuteChanged, hourChanged, monthChanged, bucketMonthChanged } (signed amounts).
]]

--- @include "clock"
--- @include "utc-month"
--- @include "sliding-window"

local terms = cjson.decode(ARGV[1])
local k, amount, at = terms[1], terms[3], terms[4]
local now = clock_now(terms[2])
local monthField = utc_month(now)

-- Changes one existing field by `amount`, at most down to zero; returns the change made.
local function change_field (key, field, by)
  local value = tonumber(redis.call('HGET', key, field))
  if value == nil then return 0 end
  if by < 0 and -by > value then by = -value end
  if by ~= 0 then redis.call('HINCRBY', key, field, by) end
  return by
end

-- One window: the reservation's bucket (a settle), or the newest buckets first (a refund). The
-- running sum follows every change of a bucket.
local function change_window (prefix, length)
  local win = window_at(prefix, length, k, now)
  local changed = 0
  if at >= 0 then
    local index = math.floor(at / win.size)
    if index >= win.current - k and index <= win.current then changed = change_field(KEYS[1], prefix .. index, amount) end
  else
    local left = -amount
    for index = win.current, win.current - k, -1 do
      if left == 0 then break end
      local taken = -change_field(KEYS[1], prefix .. index, -left)
      left, changed = left - taken, changed - taken
    end
  end
  if changed ~= 0 then redis.call('HINCRBY', KEYS[1], prefix .. 'S', changed) end
  return changed
end

-- The month: the reservation's month while it is still the current one.
local function change_month (key)
  if at >= 0 and utc_month(at) ~= monthField then return 0 end
  return change_field(key, monthField, amount)
end

local changedM = terms[5] == 1 and change_window('m', 60000) or 0
local changedH = terms[6] == 1 and change_window('h', 3600000) or 0
local changedQ = terms[7] == 1 and change_month(KEYS[2]) or 0
local changedB = 0
if terms[8] == 1 then
  -- On the shared bucket the bucket's month is the subject's: changed once.
  if KEYS[2] == KEYS[1] and terms[7] == 1 then changedB = changedQ else changedB = change_month(KEYS[1]) end
end
return { now, changedM, changedH, changedQ, changedB }
