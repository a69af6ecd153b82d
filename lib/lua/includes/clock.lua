-- clock: the time every decision is made at, in ms since the epoch. Redis's own clock (TIME), so
-- every instance agrees; a clock given by the caller (>= 0) only for replays and tests.
local function clock_now (given)
  if given ~= nil and given >= 0 then return given end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
