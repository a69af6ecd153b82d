-- quota-alerts: which shares of a monthly quota ("thresholds") an admission's count crossed. A
-- counters hash remembers, per month and threshold, the quota at which that threshold last fired
-- (field A<yyyymm>:<threshold>), so each fires once per subject, bucket and month, however many
-- admissions race across it. A quota that changed since re-arms only the thresholds its count has
-- not reached yet at the new quota.

-- The fields of the thresholds in one month, and the names the batch's view keeps them under.
local function alert_fields (thresholds, monthField)
  local fields, names = {}, {}
  for i = 1, #thresholds do
    fields[i] = 'A' .. string.sub(monthField, 2) .. ':' .. tostring(thresholds[i])
    names[i] = 'alert' .. i
  end
  return fields, names
end

-- The thresholds (comma-separated, as given, in increasing order) that a count going from `before`
-- to `after` under `quota` crosses now, each marked in the view `st` as fired at this quota; nil when
-- none. `names` are the thresholds' names in the view; `set` records a changed field in it. A count
-- under the lowest threshold (nearly every admission) costs one comparison.
local function alert_crossings (st, thresholds, names, before, after, quota, set)
  if after < thresholds[1] * quota or after <= 0 then return nil end
  local crossed = nil
  for i = 1, #thresholds do
    local mark = thresholds[i] * quota
    if after < mark then break end
    local firedAt = tonumber(st[names[i]])
    if firedAt == nil or (firedAt ~= quota and before < mark) then
      set(st, names[i], quota)
      crossed = crossed == nil and tostring(thresholds[i]) or crossed .. ',' .. tostring(thresholds[i])
    end
  end
  return crossed
end
