-- Set one incarnation's connection counts in a room, keep the room's totals
-- in step, and publish join/leave when a user's total leaves or reaches 0.
-- Counts are absolute, so sending them again changes nothing: a process
-- re-sends them all after an outage. With exact = '1' the listed users are
-- the incarnation's whole share of the room and any other user it had goes
-- (none listed: the incarnation leaves the room; a janitor does this for
-- dead ones).
-- KEYS: members (the incarnation's, this room), users, channel. ARGV: exact, user, count, ...
-- Returns how many notices it published.
local published = 0
local function set(user, count)
  local old = tonumber(redis.call('HGET', KEYS[1], user) or '0')
  if count == old then return end
  -- The total first: a script that fails is not undone, and should it fail
  -- here (a key of the wrong type), the share must not claim it was counted.
  local total = redis.call('HINCRBY', KEYS[2], user, count - old)
  if count > 0 then redis.call('HSET', KEYS[1], user, count) else redis.call('HDEL', KEYS[1], user) end
  local before = total - (count - old)
  if total <= 0 then redis.call('HDEL', KEYS[2], user) end
  if before <= 0 and total > 0 then
    redis.call('SPUBLISH', KEYS[3], 'join:' .. user)
    published = published + 1
  elseif before > 0 and total <= 0 then
    redis.call('SPUBLISH', KEYS[3], 'leave:' .. user)
    published = published + 1
  end
end
local listed = {}
for i = 2, #ARGV, 2 do
  listed[ARGV[i]] = true
  set(ARGV[i], tonumber(ARGV[i + 1]))
end
if ARGV[1] == '1' then
  for _, user in ipairs(redis.call('HKEYS', KEYS[1])) do
    if not listed[user] then set(user, 0) end
  end
end
return published
