-- The shared rate's key and arguments come after everything else (KEYS: ...,
-- rate; ARGV: ..., rate per second (0: off), burst): taken off first, so the
-- rest of the script sees its own layout ("shared rate" below).
local rate_key = table.remove(KEYS)
local rate_burst = tonumber(table.remove(ARGV))
local rate = tonumber(table.remove(ARGV))

-- Store a message unless its client_id was stored within the resend window,
-- then ring the room's doorbell with it. The check, the XADD and the resend key are
-- one script, so two processes that receive the same resend at once cannot
-- both store it.
-- Trimming is done here in batches rather than with XADD's MAXLEN ~: Redis
-- 7.0's max-deleted-entry-id tracks XDEL only, and MAXLEN ~ cannot say which
-- ids it removed, yet `complete` needs the newest trimmed id; and ~ drops
-- whole macro nodes (100 entries), which for a small retention keeps many
-- times too much. Once the stream holds a tenth more than retention, the
-- newest id about to go is recorded and the stream trimmed exactly.
-- With a room TTL, every key of the room expires once its last message is
-- that old (--room-ttl).
-- KEYS: stream, born, trimmed, channel[, resend].
-- ARGV: retention, ttl_ms (0: never), user, text[, client_id, window_ms].
-- Returns {id, 0} for a new message, {id, 1, fields or false} for a resend.
if KEYS[5] then
  local earlier = redis.call('GET', KEYS[5])
  if earlier then
    local entry = redis.call('XRANGE', KEYS[1], earlier, earlier)[1]
    return {earlier, 1, entry and entry[2] or false}
  end
end
-- ---- shared rate: the user's message budget in this room, over every process ----
-- A token bucket in a hash (tokens, at: ms on Redis's clock, the one clock
-- every process shares), checked after the resend check (a resent message
-- that was accepted still gets its ack) and before anything is stored. A
-- refusal spends nothing and is answered {'', 2}. The key goes once the
-- bucket would be full again, when it is no different from a missing one.
if rate > 0 then
  local now = redis.call('TIME')
  now = now[1] * 1000 + now[2] / 1000
  local bucket = redis.call('HMGET', rate_key, 'tokens', 'at')
  local tokens = rate_burst
  if bucket[1] then
    tokens = math.min(rate_burst, tonumber(bucket[1]) + math.max(0, now - tonumber(bucket[2])) * rate / 1000)
  end
  if tokens < 1 then return {'', 2} end
  redis.call('HSET', rate_key, 'tokens', tokens - 1, 'at', now)
  redis.call('PEXPIRE', rate_key, math.ceil(rate_burst * 1000 / rate))
end
-- ---- end of the shared rate ----
local id
if KEYS[5] then
  id = redis.call('XADD', KEYS[1], '*', 'user', ARGV[3], 'text', ARGV[4], 'cid', ARGV[5])
  local window = tonumber(ARGV[6])
  if tonumber(ARGV[2]) > 0 then window = math.min(window, tonumber(ARGV[2])) end
  redis.call('SET', KEYS[5], id, 'PX', window)
else
  id = redis.call('XADD', KEYS[1], '*', 'user', ARGV[3], 'text', ARGV[4])
end
redis.call('SET', KEYS[2], id, 'NX')
local retention = tonumber(ARGV[1])
local excess = redis.call('XLEN', KEYS[1]) - retention
if excess > math.max(1, math.floor(retention / 10)) then
  local doomed = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('SET', KEYS[3], doomed[#doomed][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', retention)
end
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
-- The doorbell carries the entry itself: a reader whose room is caught up
-- delivers it without reading the stream (consumer.py).
redis.call('SPUBLISH', KEYS[4], cjson.encode({id, ARGV[3], ARGV[4], ARGV[5] or false}))
return {id, 0}
