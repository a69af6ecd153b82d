--[[
leases.lua: concurrency leases, kept in the subject's hash beside its windows.

A lease is a field 'l:' .. id holding its expiry (Unix ms), and 'lN' counts them, so a request's
lease is a field of a hash that exists anyway, not a key of its own. A lease never given back (its
process crashed) is counted until an admission at the limit sweeps it out, once it has expired.
]]

-- Gives back the leases `ids` that `key` still holds; returns how many it held.
local function leases_give_back (key, ids)
  local fields = {}
  for i = 1, #ids do fields[i] = 'l:' .. ids[i] end
  local gone = 0
  -- In chunks: unpack has a stack limit, and a sweep may give back many.
  for i = 1, #fields, 1000 do gone = gone + redis.call('HDEL', key, unpack(fields, i, math.min(i + 999, #fields))) end
  if gone > 0 and redis.call('HINCRBY', key, 'lN', -gone) <= 0 then redis.call('HDEL', key, 'lN') end
  return gone
end

-- Gives back the leases whose expiry has passed; returns how many, and the earliest expiry left
-- (nil when none is left). Reads the whole hash: only an admission at the limit needs it.
local function leases_sweep (key, now)
  local all, expired, earliest = redis.call('HGETALL', key), {}, nil
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'l:' then
      local expiry = tonumber(all[i + 1])
      if expiry <= now then
        expired[#expired + 1] = string.sub(all[i], 3)
      elseif earliest == nil or expiry < earliest then
        earliest = expiry
      end
    end
  end
  if #expired == 0 then return 0, earliest end
  return leases_give_back(key, expired), earliest
end

-- The leases of `key` that have not expired.
local function leases_live (key, now)
  local all, live = redis.call('HGETALL', key), 0
  for i = 1, #all, 2 do
    if string.sub(all[i], 1, 2) == 'l:' and tonumber(all[i + 1]) > now then live = live + 1 end
  end
  return live
end
