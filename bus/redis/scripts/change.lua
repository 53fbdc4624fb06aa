-- Store an edit or a deletion of a message as an entry of the room's stream
-- (fields user, text, op, of), after checking it may be made, then ring the
-- room's doorbell with it. The check and the XADD are one script, so two
-- processes cannot both delete one message, nor edit one already deleted.
-- A change always comes after its message: trimming (oldest first) never
-- keeps a change whose message is gone, and the stream alone says what each
-- message is now (bus/changes.py).
-- Trimming, by count and by size, is trim.lua's; field() is entries.lua's.
-- KEYS: stream, born, trimmed, channel, bytes (the room's size counter).
-- ARGV: target id, op ('edit' or 'delete'), user, text, author ('' anyone's),
--       window_ms (0: any time), retention, ttl_ms (0: never), history_bytes (0: no bound).
-- Returns {'ok', id} or {'refused', 'not_found' or 'not_allowed', why: 'gone', 'deleted', 'author' or 'late'}.
local target = ARGV[1]
local found = redis.call('XRANGE', KEYS[1], target, target)[1]
if not found or field(found[2], 'of') then return {'refused', 'not_found', 'gone'} end
for _, entry in ipairs(redis.call('XRANGE', KEYS[1], '(' .. target, '+')) do
  if field(entry[2], 'of') == target and field(entry[2], 'op') == 'delete' then
    return {'refused', 'not_found', 'deleted'}
  end
end
if ARGV[5] ~= '' and field(found[2], 'user') ~= ARGV[5] then return {'refused', 'not_allowed', 'author'} end
local window = tonumber(ARGV[6])
if ARGV[2] == 'edit' and window > 0 then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  local sent_ms = tonumber(string.match(target, '^(%d+)'))
  if now_ms - sent_ms > window then return {'refused', 'not_allowed', 'late'} end
end

local id = redis.call('XADD', KEYS[1], '*', 'user', ARGV[3], 'text', ARGV[4], 'op', ARGV[2], 'of', target)
trim_room(KEYS[1], KEYS[3], KEYS[5], tonumber(ARGV[7]), tonumber(ARGV[9]), id, #ARGV[4])
local ttl = tonumber(ARGV[8])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[5], ttl)
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
redis.call('SPUBLISH', KEYS[4], cjson.encode({id, ARGV[3], ARGV[4], false, ARGV[2], target}))
return {'ok', id}
