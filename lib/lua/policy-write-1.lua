--[[
policy-write-1.lua: store or remove one policy entry, give it the next version, and announce it.

KEYS[1]  policies hash. Field __version holds the latest version; every other field holds
         {"v":<version>,"expiresAt":<ms or null>,"value":<JSON>}
ARGV[1]  field
ARGV[2]  value as JSON, or '' to remove the field
ARGV[3]  lifetime in ms, or '' for no expiry
ARGV[4]  pub/sub channel for change notices
ARGV[5]  the field as a JSON string (for the notice)
ARGV[6]  '' to write unconditionally; else only if the field's stored version equals this one

Returns { version, entry JSON or 'null' } or { 0, 'skipped' } when ARGV[6] did not match.
]]

-- Above this a version is not a whole number every reader holds exactly (2^53 - 1).
local MAX_VERSION = 9007199254740991

local held = redis.call('HGET', KEYS[1], ARGV[1])
local heldVersion = held and string.match(held, '^{"v":(%d+)')
if ARGV[6] ~= '' and heldVersion ~= ARGV[6] then return { 0, 'skipped' } end

local v = redis.call('HINCRBY', KEYS[1], '__version', 1)
-- A field written by another tool may carry a version above the hash's: go above it, so this
-- change is newer than the field's old entry on every instance.
heldVersion = tonumber(heldVersion)
if heldVersion and heldVersion >= v and heldVersion < MAX_VERSION then
  v = heldVersion + 1
  redis.call('HSET', KEYS[1], '__version', string.format('%d', v))
end
v = string.format('%d', v)

local entry = 'null'
if ARGV[2] ~= '' then
  local expiresAt = 'null'
  if ARGV[3] ~= '' then
    local t = redis.call('TIME')
    expiresAt = string.format('%d', tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[3]))
  end
  entry = '{"v":' .. v .. ',"expiresAt":' .. expiresAt .. ',"value":' .. ARGV[2] .. '}'
  redis.call('HSET', KEYS[1], ARGV[1], entry)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', ARGV[4], '{"v":' .. v .. ',"field":' .. ARGV[5] .. ',"entry":' .. entry .. '}')
return { tonumber(v), entry }
