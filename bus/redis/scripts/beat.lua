-- An incarnation's heartbeat (Redis clock, so processes' clocks need not agree).
-- One silent for longer than the timeout is dead for good: it is not
-- refreshed again (its process starts over under a new incarnation), so a
-- janitor that saw it dead never races its return. A new one (first = '1')
-- is simply recorded.
-- KEYS: alive zset. ARGV: incarnation, timeout_ms (0: never), first.
-- Returns {1, now_ms, {incarnation, score, ...}} or {0, now_ms, {}} when it is dead.
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local timeout = tonumber(ARGV[2])
if ARGV[3] ~= '1' then
  local last = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not last or (timeout > 0 and ms - tonumber(last) > timeout) then return {0, ms, {}} end
end
redis.call('ZADD', KEYS[1], ms, ARGV[1])
return {1, ms, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
