-- Moderation's one write: a sanction imposed or lifted, or a disconnect, with
-- the event every process reads, in one step (bus/redis/moderation.py).
-- KEYS: sanctions (sorted set: member [kind, room, user] as JSON, score: until
-- in ms, or inf: until lifted), events (stream, capped).
-- ARGV: op ('set', 'lift' or 'disconnect'), member, until ('inf' or ms), now (ms).
-- Returns 1, or 0 for a lift of nothing (and then no event).
local op, member = ARGV[1], ARGV[2]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
if op == 'set' then
  redis.call('ZADD', KEYS[1], ARGV[3], member)
elseif op == 'lift' then
  if redis.call('ZREM', KEYS[1], member) == 0 then return 0 end
end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', 1000, '*', 'op', op, 'm', member, 'u', ARGV[3])
-- The set lives as long as its longest sanction: its TTL is the longest ban's end.
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #last > 0 then
  if last[2] == 'inf' then
    redis.call('PERSIST', KEYS[1])
  else
    redis.call('PEXPIREAT', KEYS[1], last[2])
  end
end
return 1
