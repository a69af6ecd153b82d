--[[
expiry.lua: a hash lives as long as its longest-lived field.

Its field 'x' holds the expiry last given to it (Unix ms), read with the fields a script reads
anyway, so the expiry is set again only when a field that lives longer appears (a new bucket, a new
month, a lease), not on every write.
]]

-- Makes `key` (written already) live until `keep` (Unix ms) if it must live past `need` and its
-- expiry, `x` as read, falls short. `keep` may go beyond `need` (a lease's two lifetimes), so the
-- expiry is not set again with every lease.
local function keep_until (key, need, keep, x, now)
  if need <= (tonumber(x) or 0) then return end
  redis.call('HSET', key, 'x', string.format('%.0f', keep))
  -- Relative: right on Redis's clock and on a replay clock alike.
  redis.call('PEXPIRE', key, math.ceil(keep - now))
end
