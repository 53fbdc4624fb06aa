-- Up to `limit` messages just before an id, still shown (bus/changes.py):
-- changes and deleted messages met on the way do not count. A deletion or
-- edit of one of them may have been made after `before`: every change from
-- `before` on comes back too, for the caller to apply.
-- field() and back_to_shown() are entries.lua's.
-- KEYS: stream. ARGV: before, limit.
-- Returns {entries before it, newest first; changes from it on; 1 when nothing older is shown, else 0}.
local later, hidden = {}, {}
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], ARGV[1], '+')) do
  local of = field(entry[2], 'of')
  if of then
    later[#later + 1] = entry
    if field(entry[2], 'op') == 'delete' then hidden[of] = true end
  end
end
if ARGV[1] == '0-0' then return {{}, later, 1} end

local taken, complete = back_to_shown(KEYS[1], '(' .. ARGV[1], tonumber(ARGV[2]), hidden)
return {taken, later, complete and 1 or 0}
