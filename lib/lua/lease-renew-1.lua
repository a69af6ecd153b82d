--[[
lease-renew-1.lua: extend the leases of requests still running, so long requests (streams, uploads)
keep their concurrency slot; a lease already given back or expired is not brought back.

KEYS[1]  leases hash (see admit-batch.lua)
ARGV[1]  lease lifetime in ms, counted from now (Redis TIME)
ARGV[2…] lease ids

Returns the number of leases extended.
]]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[i], expiry)
    renewed = renewed + 1
  end
end
-- The hash may already live longer (admit-batch.lua renews it for two lifetimes): never shorten it.
-- (Compared here rather than with PEXPIREAT's GT option, which needs Redis 7.)
if renewed > 0 then
  local ttl = redis.call('PTTL', KEYS[1]) -- -1: no expiry at all, which must not last
  if ttl == -1 or expiry > now + ttl then
    redis.call('PEXPIREAT', KEYS[1], expiry)
  end
end
return renewed
