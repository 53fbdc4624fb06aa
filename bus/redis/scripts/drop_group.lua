-- Destroy a process's group on a room's stream; delete the stream too when it
-- is an empty one that only a group's MKSTREAM made (never written, no groups left).
-- KEYS: stream, born. ARGV: group. Returns 1 if a group was destroyed.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local destroyed = redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
if redis.call('XLEN', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0
    and #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
end
return destroyed
