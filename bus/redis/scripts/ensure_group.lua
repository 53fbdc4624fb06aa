-- Make sure this process's group exists on a room's stream, and say where it stands.
-- First subscription (cursor ''): create at the stream's end ('$'), so
-- everything stored after subscribe() returns is delivered. Re-creation after
-- the group vanished (a Redis restarted empty, a failover to a replica that
-- had not got it, a janitor, a new incarnation of this process): at the
-- cursor when the room's epoch is still the one the process knew, else at 0,
-- since every entry of a new epoch is new to it.
-- A group that was there, with a cursor known (a new session of this
-- process): moved back to the cursor, which is what this process delivered;
-- reads are NOACK, so entries whose reply was lost with a connection are
-- read again instead of kept pending.
-- A stream that only MKSTREAM made gets the room TTL, so an empty room's
-- keys go too.
-- KEYS: stream, born. ARGV: group, known born ('' unknown), cursor ('' first time), ttl_ms.
-- Returns {status ('created', 'reset' or 'exists'), the group's last-delivered-id, born or false}.
local born = redis.call('GET', KEYS[2])
local start, status = '$', 'created'
if ARGV[3] ~= '' then
  if ARGV[2] ~= '' and born == ARGV[2] then start = ARGV[3] else start, status = '0', 'reset' end
end
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')
if type(made) == 'table' and made.err then
  if string.sub(made.err, 1, 9) ~= 'BUSYGROUP' then return made end
  status = 'exists'
  if ARGV[3] ~= '' and start ~= '0' then redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[3]) end
end
if tonumber(ARGV[4]) > 0 and redis.call('PTTL', KEYS[1]) == -1 and redis.call('XLEN', KEYS[1]) == 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
local delivered = '0-0'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, last
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1]
    elseif group[i] == 'last-delivered-id' then last = group[i + 1] end
  end
  if name == ARGV[1] then delivered = last end
end
return {status, delivered, born}
