--[[
lease-renew-1.lua: extend the leases of requests still running, so long requests (streams, uploads)
keep their concurrency slot; a lease already given back (or swept) is not brought back.

KEYS[1]  the subject's hash for the bucket (see admit-batch.lua)
ARGV[1]  lease lifetime in ms, counted from now (Redis TIME)
ARGV[2…] lease ids

Returns the number of leases extended.
]]

--- @include "clock"
--- @include "expiry"

local now = clock_now(-1)
local expiry = now + tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  local field = 'l:' .. ARGV[i]
  if redis.call('HEXISTS', KEYS[1], field) == 1 then
    redis.call('HSET', KEYS[1], field, string.format('%.0f', expiry))
    renewed = renewed + 1
  end
end
if renewed > 0 then keep_until(KEYS[1], expiry, now + 2 * tonumber(ARGV[1]), redis.call('HGET', KEYS[1], 'x'), now) end
return renewed
