-- Trimming a room's stream after an XADD, shared by publish.lua and
-- change.lua (scripts.py puts this file in front of each).
-- By count: once the stream holds a tenth more than retention, the newest id
-- about to go is recorded and the stream trimmed exactly (Redis 7.0's
-- max-deleted-entry-id tracks XDEL only, and MAXLEN ~ cannot say which ids it
-- removed, yet `complete` needs the newest trimmed id; and ~ drops whole
-- macro nodes, which for a small retention keeps many times too much).
-- By size: the room's `bytes` key holds the UTF-8 bytes of its entries'
-- texts; past max_bytes the oldest entries go (the newest always stays), read
-- 16 at a time and removed with XTRIM MINID. Every entry is counted once on
-- the way in and once on the way out: O(1) per publish, amortised.
-- A counter missing while its stream is there (a stream from before the
-- counter, an operator's DEL) is counted from the stream once.
local function text_size(fields)
  for i = 1, #fields, 2 do
    if fields[i] == 'text' then return #fields[i + 1] end
  end
  return 0
end

local function trim_room(stream, trimmed, size_key, retention, max_bytes, newest, added)
  local total
  if redis.call('EXISTS', size_key) == 1 then
    total = redis.call('INCRBY', size_key, added)
  else
    total = 0
    for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+')) do total = total + text_size(entry[2]) end
    redis.call('SET', size_key, total)
  end
  local gone, last = 0, nil
  local excess = redis.call('XLEN', stream) - retention
  if excess > math.max(1, math.floor(retention / 10)) then
    local doomed = redis.call('XRANGE', stream, '-', '+', 'COUNT', excess)
    for _, entry in ipairs(doomed) do gone = gone + text_size(entry[2]) end
    last = doomed[#doomed][1]
    redis.call('XTRIM', stream, 'MAXLEN', retention)
  end
  if max_bytes > 0 and total - gone > max_bytes then
    local from, by_size = '-', nil
    while total - gone > max_bytes do
      local batch = redis.call('XRANGE', stream, from, '(' .. newest, 'COUNT', 16)
      if #batch == 0 then
        gone = total - added  -- the newest alone is left (a counter off by an operator's XDEL: exact again)
        break
      end
      for _, entry in ipairs(batch) do
        gone = gone + text_size(entry[2])
        by_size = entry[1]
        if total - gone <= max_bytes then break end
      end
      from = '(' .. by_size
    end
    if by_size then
      last = by_size
      -- MINID keeps the ids from the threshold on: the one right after the last to go.
      local ms, seq = string.match(by_size, '^(%d+)-(%d+)$')
      redis.call('XTRIM', stream, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
    end
  end
  if last then redis.call('SET', trimmed, last) end
  if gone ~= 0 then redis.call('DECRBY', size_key, gone) end
end

