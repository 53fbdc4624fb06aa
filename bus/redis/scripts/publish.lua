-- The shared rate's key and arguments come after everything else (KEYS: ...,
-- rate; ARGV: ..., rate per second (0: off), burst): taken off first, so the
-- rest of the script sees its own layout ("shared rate" below). Before them,
-- the room's size counter and its bound (trim.lua): KEYS: ..., bytes, rate;
-- ARGV: ..., history_bytes (0: no bound), rate, burst.
local rate_key = table.remove(KEYS)
local rate_burst = tonumber(table.remove(ARGV))
local rate = tonumber(table.remove(ARGV))
local size_key = table.remove(KEYS)
local max_bytes = tonumber(table.remove(ARGV))

-- Store a message unless its client_id was stored within the resend window,
-- then ring the room's doorbell with it. The check, the XADD and the resend key are
-- one script, so two processes that receive the same resend at once cannot
-- both store it.
-- Trimming, by count and by size, is trim.lua's.
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
trim_room(KEYS[1], KEYS[3], size_key, tonumber(ARGV[1]), max_bytes, id, #ARGV[4])
local ttl = tonumber(ARGV[2])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', size_key, ttl)
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ttl) end
end
-- The doorbell carries the entry itself: a reader whose room is caught up
-- delivers it without reading the stream (shard_reader.py).
redis.call('SPUBLISH', KEYS[4], cjson.encode({id, ARGV[3], ARGV[4], ARGV[5] or false}))
return {id, 0}
