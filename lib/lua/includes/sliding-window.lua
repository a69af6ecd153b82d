--[[
sliding-window.lua: a strict sliding window, kept as k buckets in a hash.

A window of length W is k buckets of W/k ms: field <p><index>, index = floor(ms / (W/k)). Beside
them, <p>S holds their running sum and <p>O the oldest index that may still hold a field. The
oldest bucket still overlapping the window is counted in full until it has wholly left it, so the
counted set always covers the true window: no span of length W can ever hold more than the limit.
The price: capacity frees up to W/k late. Buckets that left are subtracted from the sum, and
deleted, when the window has moved on.
]]

-- The window of field prefix `p` and length `length` (ms) at `now`, in k buckets.
local function window_at (p, length, k, now)
  local g = length / k
  local cur = math.floor(now / g)
  return { p = p, length = length, k = k, g = g, cur = cur, now = now, bucket = p .. cur, sum = p .. 'S', oldest = p .. 'O' }
end

-- What the window counts now, given its stored sum and oldest index: the sum less the buckets that
-- have wholly left it. Also returns the names of those buckets (nil when none left). Every bucket
-- lies in [oldest, oldest + k], so at most k + 1 names are looked at.
local function window_used (key, w, sum, oldest)
  local used = tonumber(sum) or 0
  local o = tonumber(oldest)
  if o == nil or o >= w.cur - w.k then return used, nil end
  local names = {}
  for idx = o, math.min(w.cur - w.k - 1, o + w.k) do names[#names + 1] = w.p .. idx end
  local values = redis.call('HMGET', key, unpack(names))
  for i = 1, #names do
    if values[i] then used = used - tonumber(values[i]) end
  end
  return used, names
end

-- Ms from now until `need` units have left the window; the window's length if they never will.
local function window_wait (key, w, need)
  local names = {}
  for idx = w.cur - w.k, w.cur do names[#names + 1] = w.p .. idx end
  local values = redis.call('HMGET', key, unpack(names))
  local freed = 0
  for i = 1, #names do
    if values[i] then
      freed = freed + tonumber(values[i])
      -- Bucket cur - k + i - 1 leaves the window when bucket cur + i begins.
      if freed >= need then return (w.cur + i) * w.g - w.now end
    end
  end
  return w.length
end

-- Counts `cost` in the window whose use is `used` (stale: the buckets that left, to delete now),
-- whose current bucket holds `bucket` and whose oldest index is `oldest` (as read). Appends the
-- fields to write to `writes`; returns the Unix ms until which the current bucket counts.
local function window_take (key, w, used, stale, bucket, oldest, cost, writes)
  local n = #writes
  writes[n + 1], writes[n + 2] = w.bucket, (tonumber(bucket) or 0) + cost
  writes[n + 3], writes[n + 4] = w.sum, used + cost
  if stale ~= nil or not oldest then writes[n + 5], writes[n + 6] = w.oldest, w.cur - w.k end
  if stale ~= nil then redis.call('HDEL', key, unpack(stale)) end
  return (w.cur + w.k + 1) * w.g
end
