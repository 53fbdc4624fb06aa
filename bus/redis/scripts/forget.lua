-- Forget a dead incarnation once the janitor cleaned the rooms it listed,
-- unless it sent a heartbeat since the janitor looked.
-- KEYS: alive zset, its rooms set. ARGV: incarnation, score seen, rooms cleaned...
-- Returns 1 when it was forgotten.
if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
for i = 3, #ARGV do redis.call('SREM', KEYS[2], ARGV[i]) end
if redis.call('SCARD', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
