--[[
clock.lua: the time every decision is taken at.
]]

-- Unix ms: Redis's own clock (TIME), so every instance shares one; or `given` (>= 0), for replays
-- and tests only.
local function clock_now (given)
  if given >= 0 then return given end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
