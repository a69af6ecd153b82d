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

-- The thresholds (comma-separated, as given) that a count going from `before` to `after` under
-- `quota` crosses now, each marked in the view `st` as fired at this quota; nil when none. `set`
-- records a changed field in the view.
local function alert_crossings (st, thresholds, before, after, quota, set)
  local crossed = nil
  for i = 1, #thresholds do
    local mark = thresholds[i] * quota
    local name = 'alert' .. i
    local firedAt = tonumber(st[name])
    if after >= mark and after > 0 and (firedAt == nil or (firedAt ~= quota and before < mark)) then
      set(st, name, quota)
      crossed = crossed == nil and tostring(thresholds[i]) or crossed .. ',' .. tostring(thresholds[i])
    end
  end
  return crossed
end
