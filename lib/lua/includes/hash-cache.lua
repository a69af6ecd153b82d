--[[
hash-cache.lua: the hashes a script touches, each read once and written once.

Items of one batch often share a hash (a busy tenant). Every read and write of an admission goes
through this cache: a field is read from Redis the first time the script needs it, and what the
script changed is written at the end (hash_flush), with one HSET and one HDEL per hash and its
expiry set once. Each item still sees what the items before it wrote, as if every write went to
Redis at once. Values read are strings, values written may be numbers: readers use tonumber.
]]

-- key → { values = field → value (false: known absent; nil: not read yet), dirty = field → true,
--         whole = every field has been read, expireAt = Unix ms the key must live until, or nil }
local hashes = {}

local function hash_of (key)
  local h = hashes[key]
  if h == nil then
    h = { values = {}, dirty = {}, whole = false, expireAt = nil }
    hashes[key] = h
  end
  return h
end

-- The values of `fields` of `key`, false where a field is absent.
local function hash_get (key, fields)
  local h = hash_of(key)
  if not h.whole then
    local missing = {}
    for i = 1, #fields do
      if h.values[fields[i]] == nil then missing[#missing + 1] = fields[i] end
    end
    if #missing > 0 then
      local read = redis.call('HMGET', key, unpack(missing))
      for i = 1, #missing do h.values[missing[i]] = read[i] end
    end
  end
  local out = {}
  for i = 1, #fields do out[i] = h.values[fields[i]] or false end
  return out
end

-- Every field of `key`, as a table field → value (absent fields hold false: skip them).
local function hash_all (key)
  local h = hash_of(key)
  if not h.whole then
    local all = redis.call('HGETALL', key)
    for i = 1, #all, 2 do
      if h.values[all[i]] == nil then h.values[all[i]] = all[i + 1] end
    end
    h.whole = true
  end
  return h.values
end

local function hash_set (key, field, value)
  local h = hash_of(key)
  h.values[field], h.dirty[field] = value, true
end

-- Removes `field`; returns whether it was there.
local function hash_del (key, field)
  local held = hash_get(key, { field })[1]
  if not held then return false end
  local h = hashes[key]
  h.values[field], h.dirty[field] = false, true
  return true
end

-- The key must live until `at` (Unix ms); set once, after the writes.
local function hash_expire (key, at)
  local h = hash_of(key)
  if h.expireAt == nil or at > h.expireAt then h.expireAt = at end
end

-- Runs a hash command over list[1..#list] in chunks (unpack has a stack limit). Chunks are even,
-- so HSET pairs hold.
local function chunked (command, key, list)
  for i = 1, #list, 1000 do redis.call(command, key, unpack(list, i, math.min(i + 999, #list))) end
end

-- Writes what changed: for each hash, its fields, then its expiry (relative: right on Redis's clock
-- and on a replay clock alike).
local function hash_flush (now)
  for key, h in pairs(hashes) do
    local sets, dels = {}, {}
    for field in pairs(h.dirty) do
      local value = h.values[field]
      if value then
        sets[#sets + 1], sets[#sets + 2] = field, value
      else
        dels[#dels + 1] = field
      end
    end
    chunked('HSET', key, sets)
    chunked('HDEL', key, dels)
    if h.expireAt ~= nil then redis.call('PEXPIRE', key, math.ceil(h.expireAt - now)) end
  end
  hashes = {}
end
