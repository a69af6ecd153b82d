--[[
admit-batch.lua: decide a batch of requests one after another, and for each one admitted take
everything it needs; the batch runs atomically, at one instant of Redis's clock. A batch of one is
the same as a single call; on a Redis Cluster every batch is one item.

For item i (i = 1…n, n = (#ARGV - 1) / 3):
KEYS[2i-1]  the subject's hash for the request's bucket, its one key: the minute and hour windows
            (sliding-window.lua), the month's count q<yyyymm> (utc-month.lua), the concurrency
            leases (leases.lua) and the expiry last set, x (expiry.lua)
KEYS[2i]    the same bucket's counters under key layout v1, read only while this month has no count
            yet, so an upgrade loses no monthly usage
ARGV[3i-1]  the request's terms, a JSON array [cost, minuteLimit, hourLimit, monthlyQuota,
            concurrencyLimit] (-1: unlimited; cost >= 1), or '' for an item that only gives
            leases back
ARGV[3i]    the lease id to take, when the concurrency limit is not -1
ARGV[3i+1]  lease ids to give back first: '', one id (not starting with '['), or a JSON array

ARGV[1]     what the batch shares, a JSON array [k, leaseTtlMs, clockMs]: k sub-buckets per window;
            a lease never given back frees itself leaseTtlMs after its last renewal; clockMs -1 to
            take the time from Redis TIME (always, but for replays and tests)

Returns one string, a line per item:
  'reason retryAfterMs nowMs minuteUsed hourUsed monthUsed inFlight' (seven integers)
    reason: 0 admitted, 1 rate_limit_exceeded, 2 concurrent_limit_exceeded, 3 quota_exceeded;
    *Used: what is counted after this item (0 for an unlimited window); the caller derives the
    remaining amounts and reset times from them, `now`, k and the month
  'R' for an item that only gave leases back
  'E <message>' for an item that failed (a foreign value under its keys): the others still count

Items run one by one, each reading and writing Redis itself: an item sees what the items before it
took, exactly as if each were a call of its own.
]]

--- @include "clock"
--- @include "utc-month"
--- @include "sliding-window"
--- @include "leases"
--- @include "expiry"

local shared = cjson.decode(ARGV[1])
local k, leaseTtl = shared[1], shared[2]
local now = clock_now(shared[3])
local monthId, monthEnd = utc_month(now)
local monthField = 'q' .. monthId
local max, format = math.max, string.format

local function admit (key, legacyKey, termsText, leaseId, releasing)
  if releasing ~= '' then
    leases_give_back(key, string.byte(releasing) == 91 and cjson.decode(releasing) or { releasing }) -- '[': several
  end
  if termsText == '' then return 'R' end
  local terms = cjson.decode(termsText)
  local cost, limM, limH, limQ, limC = terms[1], terms[2], terms[3], terms[4], terms[5]

  -- One read for everything this admission needs, unless a window has moved on or a limit is hit.
  local M, H = window_at('m', 60000, k, now), window_at('h', 3600000, k, now)
  local f = redis.call('HMGET', key, M.sum, M.oldest, M.bucket, H.sum, H.oldest, H.bucket, monthField, 'lN', 'x')
  local usedM, staleM, usedH, staleH = 0, nil, 0, nil
  if limM >= 0 then usedM, staleM = window_used(key, M, f[1], f[2]) end
  if limH >= 0 then usedH, staleH = window_used(key, H, f[4], f[5]) end
  local usedQ = tonumber(f[7])
  if usedQ == nil then usedQ = limQ >= 0 and tonumber(redis.call('HGET', legacyKey, monthField)) or 0 end
  local inFlight = limC >= 0 and tonumber(f[8]) or 0

  local reason, retry = 0, 0
  if limQ >= 0 and usedQ + cost > limQ then reason, retry = 3, monthEnd - now end
  if limH >= 0 and usedH + cost > limH then
    if reason == 0 then reason = 1 end
    retry = max(retry, window_wait(key, H, usedH + cost - limH))
  end
  if limM >= 0 and usedM + cost > limM then
    if reason == 0 then reason = 1 end
    retry = max(retry, window_wait(key, M, usedM + cost - limM))
  end
  if limC >= 0 and inFlight + 1 > limC then
    -- Leases of crashed processes are swept only when they stand in the way.
    local gone, earliest = leases_sweep(key, now)
    inFlight = inFlight - gone
    if inFlight + 1 > limC then
      if reason == 0 then reason = 2 end
      -- Slots free as soon as requests finish: a second is a fair hint, and the earliest lease
      -- expiry the latest a slot can take to free.
      retry = max(retry, earliest == nil and 1000 or math.min(1000, earliest - now))
    end
  end

  if reason == 0 then
    -- need: until when the fields written now count; keep: the expiry to give the key for that.
    local writes, need, keep = {}, 0, 0
    if limM >= 0 then
      need = window_take(key, M, usedM, staleM, f[3], f[2], cost, writes)
      usedM = usedM + cost
    end
    if limH >= 0 then
      need = max(need, window_take(key, H, usedH, staleH, f[6], f[5], cost, writes))
      usedH = usedH + cost
    end
    if limQ >= 0 then
      usedQ = usedQ + cost
      writes[#writes + 1], writes[#writes + 2] = monthField, usedQ
      need = max(need, monthEnd)
    end
    if limC >= 0 then
      inFlight = inFlight + 1
      local n = #writes
      writes[n + 1], writes[n + 2] = 'l:' .. leaseId, format('%.0f', now + leaseTtl)
      writes[n + 3], writes[n + 4] = 'lN', inFlight
      need = max(need, now + leaseTtl)
      -- Two lifetimes, so the expiry is set again once per lifetime, not with every lease.
      keep = now + 2 * leaseTtl
    end
    if #writes > 0 then
      redis.call('HSET', key, unpack(writes))
      keep_until(key, need, max(need, keep), f[9], now)
    end
  end

  return format('%d %.0f %.0f %.0f %.0f %.0f %d', reason, math.ceil(retry), now,
    limM >= 0 and usedM or 0, limH >= 0 and usedH or 0, usedQ, inFlight)
end

-- Each item on its own: one that fails (a foreign value under its keys) fails alone.
local lines = {}
for i = 1, (#ARGV - 1) / 3 do
  local ok, line = pcall(admit, KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1])
  if not ok then
    line = 'E ' .. (type(line) == 'table' and tostring(line.err) or tostring(line)):gsub('\n', ' ')
  end
  lines[i] = line
end
return table.concat(lines, '\n')
