-- leases: concurrency leases in a hash of their own, lease id -> expiry (ms). A lease never given
-- back (a crashed process) frees itself at its expiry: the hash is swept when it looks full. Within
-- a batch, leases taken are kept in a table and written once, after the last item.

local function chunked (command, key, list, first, last)
  -- unpack has a stack limit and a full hash may be large: at most 1,000 arguments a call (even,
  -- so HSET pairs hold). Returns the sum of the replies.
  local total = 0
  for i = first, last, 1000 do total = total + redis.call(command, key, unpack(list, i, math.min(i + 999, last))) end
  return total
end

-- The batch's view of a leases hash: how many it holds, whether its expiry must be renewed, and the
-- leases taken and not written yet: `taken` values in the table's list part (id, expiry, id, ...).
local function leases_open (key)
  return { count = redis.call('HLEN', key), renew = false, taken = 0 }
end

local function leases_take (ls, id, expiryText)
  ls[ls.taken + 1], ls[ls.taken + 2] = id, expiryText
  ls.taken = ls.taken + 2
  ls.count = ls.count + 1
end

local function leases_write (key, ls, keepMs)
  chunked('HSET', key, ls, 1, ls.taken)
  if ls.renew then redis.call('PEXPIRE', key, keepMs) end
  ls.taken, ls.renew = 0, false
end

-- Gives leases back (a release, or the sweep of expired ones); returns how many were there. Emptying
-- the hash deletes it and its expiry: when that may happen, the leases this batch took go in first,
-- as one by one they would have been there already.
local function leases_give_back (key, ls, ids, keepMs)
  if ls ~= nil and ls.taken > 0 and ls.count - ls.taken / 2 <= #ids then leases_write(key, ls, keepMs) end
  local deleted = chunked('HDEL', key, ids, 1, #ids)
  if ls ~= nil then ls.count = ls.count - deleted end
  return deleted
end

-- For a hash at its limit: gives back the leases that expired, and returns the earliest expiry of
-- those left (nil when none), counting the leases this batch took (they expire at `takenExpiry`).
-- Values first: their names are read only when some lease has expired.
local function leases_sweep (key, ls, now, takenExpiry, keepMs)
  local earliest, expired = nil, 0
  for _, value in ipairs(redis.call('HVALS', key)) do
    local expiry = tonumber(value)
    if expiry <= now then
      expired = expired + 1
    elseif earliest == nil or expiry < earliest then
      earliest = expiry
    end
  end
  if ls.taken > 0 and (earliest == nil or takenExpiry < earliest) then earliest = takenExpiry end
  if expired > 0 then
    local all, ids = redis.call('HGETALL', key), {}
    for i = 1, #all, 2 do
      if tonumber(all[i + 1]) <= now then ids[#ids + 1] = all[i] end
    end
    leases_give_back(key, ls, ids, keepMs)
  end
  return earliest
end
