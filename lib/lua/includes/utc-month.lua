-- utc-month: the UTC calendar month holding a time, as the name of its counter field ('q' .. yyyymm)
-- and the ms at which it ends. Civil-from-days arithmetic on the proleptic Gregorian calendar.
local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

local function utc_month (now)
  local floor = math.floor
  local days = floor(now / 86400000)
  local z = days + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local day = doy - floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  local length = MONTH_DAYS[month]
  if month == 2 and year % 4 == 0 and (year % 100 ~= 0 or year % 400 == 0) then length = 29 end
  return 'q' .. (year * 100 + month), (days - day + 1 + length) * 86400000
end
