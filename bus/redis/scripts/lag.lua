-- How far each consumer group on a room's stream is behind (read-only).
-- A group stands where its process last marked or read it (groups.mark_groups:
-- caught-up rooms are delivered from their doorbells, which never move the
-- group). For this process's own group the position it passes is used: what
-- it has delivered now, not at its last mark.
-- KEYS: stream. ARGV: this process's group, its cursor ('' if not known yet), cap.
-- Returns {now_ms, name, behind, behind_ms, pending, pending_idle_ms, ...} per group:
-- behind: entries after the group's position (at most cap); behind_ms: age of
-- the first of them (Redis clock); pending_idle_ms: idle time of the oldest
-- unacknowledged entry (the bus reads with NOACK: normally none).
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
if type(groups) ~= 'table' or groups.err then return {now_ms} end
local out = {now_ms}
for _, group in ipairs(groups) do
  local name, last, pending = '', '0-0', 0
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1]
    elseif group[i] == 'last-delivered-id' then last = group[i + 1]
    elseif group[i] == 'pending' then pending = group[i + 1] end
  end
  if name == ARGV[1] and ARGV[2] ~= '' then last = ARGV[2] end
  local after = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', ARGV[3])
  local behind_ms = 0
  if #after > 0 then behind_ms = math.max(0, now_ms - tonumber(string.match(after[1][1], '^(%d+)'))) end
  local idle = 0
  if pending > 0 then
    local oldest = redis.call('XPENDING', KEYS[1], name, '-', '+', 1)
    if #oldest > 0 then idle = oldest[1][3] end
  end
  table.insert(out, name)
  table.insert(out, #after)
  table.insert(out, behind_ms)
  table.insert(out, pending)
  table.insert(out, idle)
end
return out
