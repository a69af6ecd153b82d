--[[
lease-renew-1.lua: extend the leases of requests still running, so long requests (streams, uploads)
keep their concurrency slot; a lease already given back (or swept) is not brought back.

KEYS[1]  the subject's hash for the bucket (see admit-batch.lua)
ARGV[1]  lease lifetime in ms, counted from now (Redis TIME)
ARGV[2…] lease ids

Returns the number of leases extended.
]]

--- @include "hash-cache"
--- @include "clock"
--- @include "expiry"

local now = clock_now(-1)
local expiry = now + tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  local field = 'l:' .. ARGV[i]
  if hash_get(KEYS[1], { field })[1] then
    hash_set(KEYS[1], field, string.format('%.0f', expiry))
    renewed = renewed + 1
  end
end
if renewed > 0 then keep_until(KEYS[1], expiry, now + 2 * tonumber(ARGV[1]), hash_get(KEYS[1], { 'x' })[1]) end
hash_flush(now)
return renewed
