-- How far one process's consumer group on a room's stream is behind (read-only).
-- The group stands where the process last marked or read it. Entries after
-- it are behind when the oldest of them is older than the grace (time enough
-- for a running process to have marked past it). When retention trimmed
-- entries right after that point, the group has waited since its own id.
-- (Redis's XINFO lag cannot be used: a mark, XGROUP SETID, makes it unknown
-- whenever the group is not at the stream's end.)
-- KEYS: the room's stream, its trimmed key. ARGV: group name, grace_ms, at most this many counted.
-- Returns {0} without that group, else {1, pending, behind (capped; 0 within the grace), oldest ms, now ms}.
local function parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function later(a, b)
  local am, as = parts(a)
  local bm, bs = parts(b)
  return am > bm or (am == bm and as > bs)
end
local ok, groups = pcall(redis.call, 'XINFO', 'GROUPS', KEYS[1])
if not ok then return {0} end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
for _, group in ipairs(groups) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == ARGV[1] then
    local position = info['last-delivered-id']
    local after = redis.call('XRANGE', KEYS[1], '(' .. position, '+', 'COUNT', 1)
    if #after == 0 then return {1, info['pending'], 0, 0, ms} end
    local oldest = parts(after[1][1])
    local trimmed = redis.call('GET', KEYS[2])
    if trimmed and later(trimmed, position) then
      local since = parts(position)
      oldest = math.min(oldest, since)
    end
    if oldest > ms - tonumber(ARGV[2]) then return {1, info['pending'], 0, 0, ms} end
    local behind = redis.call('XRANGE', KEYS[1], '(' .. position, '+', 'COUNT', tonumber(ARGV[3]))
    return {1, info['pending'], #behind, oldest, ms}
  end
end
return {0}
