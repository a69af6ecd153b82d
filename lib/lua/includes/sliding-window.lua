-- sliding-window: a window of `length` ms kept as k buckets of length / k, in fields of a counters
-- hash: <prefix><bucket index> (the buckets), <prefix>S (their running sum) and <prefix>O (the
-- oldest bucket index that may still hold a field). Every bucket field lies in [oldest, oldest + k].
-- The oldest bucket still overlapping the window counts in full until it has wholly left, so the
-- counted set always covers the true window: no span of `length` ever holds more than the limit.

-- The window of `prefix` at `now`: its bucket length, current bucket and that bucket's field name.
local function window_at (prefix, length, k, now)
  local size = length / k
  local current = math.floor(now / size)
  return { prefix = prefix, length = length, k = k, size = size, current = current, field = prefix .. current }
end

-- What the window counts now: the running sum less the buckets that have wholly left it. Returns the
-- amount and the names of the buckets that left (nil when none), which the caller deletes once it
-- writes a new sum.
local function window_used (key, win, sum, oldest)
  local used = tonumber(sum) or 0
  local o = tonumber(oldest)
  local first = win.current - win.k
  if o == nil or o >= first then return used, nil end
  local names = {}
  for index = o, math.min(first - 1, o + win.k) do names[#names + 1] = win.prefix .. index end
  local values = redis.call('HMGET', key, unpack(names))
  for i = 1, #names do
    if values[i] then used = used - tonumber(values[i]) end
  end
  return used, names
end

-- Time (ms from now) until `need` units have left the window; the window's length if never. The
-- current bucket's value is the caller's (`current`, possibly not written yet).
local function window_wait (key, win, now, need, current)
  local names = {}
  for index = win.current - win.k, win.current do names[#names + 1] = win.prefix .. index end
  local values = redis.call('HMGET', key, unpack(names))
  values[#names] = current
  local freed = 0
  for i = 1, #names do
    if values[i] then
      freed = freed + tonumber(values[i])
      -- Bucket current - k + i - 1 leaves the window at the end of bucket current + i - 1.
      if freed >= need then return (win.current + i) * win.size - now end
    end
  end
  return win.length
end

-- Until when a counters hash must live for this window's fields: one window past the bucket just
-- written (`counting`), and past any older bucket it may still hold (from `oldest` on; a bucket that
-- left the window is deleted only by a later request).
local function window_keep_until (win, counting, oldest)
  local keep = counting and (win.current + win.k + 1) * win.size or 0
  local o = tonumber(oldest)
  if o then keep = math.max(keep, (o + 2 * win.k + 1) * win.size) end
  return keep
end
