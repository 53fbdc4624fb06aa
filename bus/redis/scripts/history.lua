-- A history read in one script, so the entries, the newest id, the epoch and
-- the trimming mark all describe the same moment. max-deleted-entry-id
-- covers XDEL (an operator removing a message), `trimmed` covers retention.
-- KEYS: stream, born, trimmed. ARGV: since ('' for none), limit.
-- Returns {born or false, max_deleted, trimmed or false, length, last_id or false, entries}
-- (entries newest first without since).
local born = redis.call('GET', KEYS[2])
local trimmed = redis.call('GET', KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {born, '0-0', trimmed, 0, false, {}}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local max_deleted, length = '0-0', 0
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then max_deleted = info[i + 1]
  elseif info[i] == 'length' then length = info[i + 1] end
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local entries = {}
if ARGV[1] == '18446744073709551615-18446744073709551615' then
  entries = {}  -- nothing can come after the largest id (and '(' of it is an error)
elseif ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')
elseif tonumber(ARGV[2]) > 0 then
  -- Back to the `limit`-th message still shown (entries.lua; bus/changes.py, tail).
  entries = back_to_shown(KEYS[1], '+', tonumber(ARGV[2]), {})
end
return {born, max_deleted, trimmed, length, newest and newest[1] or false, entries}
