-- Up to `limit` messages just before an id, still shown (bus/changes.py):
-- changes and deleted messages met on the way do not count. A deletion or
-- edit of one of them may have been made after `before`: every change from
-- `before` on comes back too, for the caller to apply.
-- KEYS: stream. ARGV: before, limit.
-- Returns {entries before it, newest first; changes from it on; 1 when nothing older is shown, else 0}.
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

local later, hidden = {}, {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], '+')) do
  local of = field(entry[2], 'of')
  if of then
    later[#later + 1] = entry
    if field(entry[2], 'op') == 'delete' then hidden[of] = true end
  end
end
if ARGV[1] == '0-0' then return {{}, later, 1} end

local limit, shown, taken, from = tonumber(ARGV[2]), 0, {}, '(' .. ARGV[1]
while true do
  local batch = redis.call('XREVRANGE', KEYS[1], from, '-', 'COUNT', limit + 16)
  if #batch == 0 then return {taken, later, 1} end
  for _, entry in ipairs(batch) do
    local of = field(entry[2], 'of')
    if of then
      if field(entry[2], 'op') == 'delete' then hidden[of] = true end
    elseif not hidden[entry[1]] then
      if shown == limit then return {taken, later, 0} end
      shown = shown + 1
    end
    taken[#taken + 1] = entry
  end
  from = '(' .. batch[#batch][1]
end
