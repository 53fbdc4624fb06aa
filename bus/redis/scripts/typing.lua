-- A typing notice, unless the user had one published in the last window_ms (on any process).
-- KEYS: typing key, channel. ARGV: user, window_ms. Returns 1 if published.
if redis.call('SET', KEYS[1], '1', 'PX', ARGV[2], 'NX') then
  redis.call('SPUBLISH', KEYS[2], 'typing:' .. ARGV[1])
  return 1
end
return 0
