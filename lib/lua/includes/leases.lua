--[[
leases.lua: concurrency leases, kept in the subject's hash beside its windows (through
hash-cache.lua).

A lease is a field 'l:' .. id holding its expiry (Unix ms), and 'lN' counts them, so a request's
lease is a field of a hash that exists anyway, not a key of its own. A lease never given back (its
process crashed) is counted until an admission at the limit sweeps it out, once it has expired.
]]

-- Takes lease `id` until `expiry`; `held` is the count before it. Returns the new count.
local function leases_take (key, id, expiry, held)
  hash_set(key, 'l:' .. id, string.format('%.0f', expiry))
  hash_set(key, 'lN', held + 1)
  return held + 1
end

-- Gives back the leases `ids` that `key` still holds; returns how many it held.
local function leases_give_back (key, ids)
  local fields = {}
  for i = 1, #ids do fields[i] = 'l:' .. ids[i] end
  fields[#ids + 1] = 'lN'
  local held = hash_get(key, fields) -- one read for the leases and their count
  local gone = 0
  for i = 1, #ids do
    -- hash_del, not held[i] alone: an id given twice counts once.
    if held[i] and hash_del(key, fields[i]) then gone = gone + 1 end
  end
  if gone > 0 then
    local left = (tonumber(held[#ids + 1]) or 0) - gone
    if left > 0 then hash_set(key, 'lN', left) else hash_del(key, 'lN') end
  end
  return gone
end

-- Gives back the leases whose expiry has passed; returns how many, and the earliest expiry left
-- (nil when none is left). Reads the whole hash: only an admission at the limit needs it.
local function leases_sweep (key, now)
  local expired, earliest = {}, nil
  for field, value in pairs(hash_all(key)) do
    if value and string.sub(field, 1, 2) == 'l:' then
      local expiry = tonumber(value)
      if expiry <= now then
        expired[#expired + 1] = string.sub(field, 3)
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
  local live = 0
  for field, value in pairs(hash_all(key)) do
    if value and string.sub(field, 1, 2) == 'l:' and tonumber(value) > now then live = live + 1 end
  end
  return live
end
