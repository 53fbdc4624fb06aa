"""Key names, Lua scripts and entry decoding of the Redis Streams backend (no I/O).

Keys of one room share the hash tag ``{<room>}`` so they live in one Redis
Cluster slot and one script may touch them all:

- ``chat:{<room>}``: the room's stream; an entry id is the message id, its
  fields are ``user``, ``text`` and, when the sender gave one, ``cid``.
- ``chat:{<room>}:born``: the first id the stream ever held in this Redis (the
  room's epoch). A Redis that restarts empty loses it together with the stream,
  so a ``since`` from before the loss is older than the new epoch.
- ``chat:{<room>}:trimmed``: the newest id that retention trimming removed.
- ``chat:{<room>}:cid:<user>:<client_id>``: the id a resendable message got;
  expires after the resend window. ``:`` and ``%`` in the user name are
  percent-encoded so that no two (user, client_id) pairs share a key.

Node bookkeeping lives under the tag ``{@nodes}`` (``@`` is not a word
character, so no room can be called that):

- ``chat:{@nodes}:heartbeat``: sorted set, node id -> last heartbeat (ms, by
  the Redis clock, so nodes' clocks need not agree).
- ``chat:{@nodes}:rooms:<node>``: the rooms whose stream holds a consumer
  group of that node, so a janitor can find and destroy them.

Presence (contract section 4b; ``streams_presence``) is counted per node
*incarnation*, ``<node>/<token>`` with a token new at each start and after the
node was taken for dead, so that a janitor removing a dead incarnation's
counts can never remove counts its node wrote afresh:

- ``chat:{<room>}:users``: hash, user -> connections to the room over all
  nodes; the presence list.
- ``chat:{<room>}:members:<incarnation>``: hash, user -> connections through
  that incarnation; what to take off ``users`` when it dies.
- ``chat:{<room>}:notices``: the pub/sub channel of the room's join, leave and
  typing notices, payload ``<kind>:<user>``.
- ``chat:{<room>}:typing:<user>``: present for a second after the user's
  typing notice, so one goes out per second whichever node the user is on.
- ``chat:{@nodes}:presence``: sorted set, incarnation -> last heartbeat (ms,
  Redis clock).
- ``chat:{@nodes}:presence:<incarnation>``: the rooms where it has counts.
"""

from __future__ import annotations

from typing import Any, Sequence

from bus.message import NOTICE_KINDS, Message, Notice

NODES_KEY = "chat:{@nodes}:heartbeat"
PRESENCE_KEY = "chat:{@nodes}:presence"


def stream_key(room: str) -> str:
    return f"chat:{{{room}}}"


def born_key(room: str) -> str:
    return f"chat:{{{room}}}:born"


def trimmed_key(room: str) -> str:
    return f"chat:{{{room}}}:trimmed"


def resend_key(room: str, user: str, client_id: str) -> str:
    safe_user = user.replace("%", "%25").replace(":", "%3A")
    return f"chat:{{{room}}}:cid:{safe_user}:{client_id}"


def node_rooms_key(node: str) -> str:
    return f"chat:{{@nodes}}:rooms:{node}"


def users_key(room: str) -> str:
    return f"chat:{{{room}}}:users"


def members_key(room: str, incarnation: str) -> str:
    return f"chat:{{{room}}}:members:{incarnation}"


def notices_channel(room: str) -> str:
    return f"chat:{{{room}}}:notices"


def typing_key(room: str, user: str) -> str:
    return f"chat:{{{room}}}:typing:{user}"


def presence_rooms_key(incarnation: str) -> str:
    return f"chat:{{@nodes}}:presence:{incarnation}"


def decode_notice(channel: str, payload: str) -> Notice | None:
    """A notice as published on a room's channel (``<kind>:<user>``); None for anything else."""
    prefix, suffix = "chat:{", "}:notices"
    if not (channel.startswith(prefix) and channel.endswith(suffix)):
        return None
    kind, sep, user = payload.partition(":")
    if not sep or not user or kind not in NOTICE_KINDS:
        return None
    return Notice(channel[len(prefix):-len(suffix)], kind, user)


def decode_fields(message_id: str, room: str, fields: dict[str, str]) -> Message | None:
    """A stream entry as a Message; None for an entry deleted since it was read."""
    if not fields:
        return None
    return Message(message_id, room, fields.get("user", ""), fields.get("text", ""), fields.get("cid"))


def decode_flat(room: str, entry: Sequence[Any]) -> Message | None:
    """An entry as Lua returns it: ``[id, [field, value, ...]]``."""
    message_id, flat = entry[0], entry[1] or []
    return decode_fields(message_id, room, dict(zip(flat[0::2], flat[1::2])))


# Store a message unless its client_id was stored within the resend window.
# The check, the XADD and the resend key are one script, so two processes that
# receive the same resend at once cannot both store it.
# Trimming is done here in batches rather than with XADD's MAXLEN ~, for two
# reasons: Redis 7.0's max-deleted-entry-id tracks XDEL only, not trimming, and
# MAXLEN ~ cannot say which ids it removed, yet ``complete`` needs the newest
# trimmed id; and ~ drops whole macro nodes (100 entries by default), which for
# a small retention keeps many times too much. Once the stream holds a tenth
# more than retention, the script records the newest id it is about to remove
# (``trimmed``) and trims exactly to retention: approximate in count, like ~,
# and amortised O(1) per message.
# KEYS: stream, born, trimmed[, resend]. ARGV: retention, user, text[, client_id, window_ms].
# Returns {id, 0} for a new message, {id, 1, fields or nil} for a resend.
PUBLISH = """
if KEYS[4] then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then
    local entry = redis.call('XRANGE', KEYS[1], earlier, earlier)[1]
    return {earlier, 1, entry and entry[2] or false}
  end
end
local id
if KEYS[4] then
  id = redis.call('XADD', KEYS[1], '*', 'user', ARGV[2], 'text', ARGV[3], 'cid', ARGV[4])
  redis.call('SET', KEYS[4], id, 'PX', ARGV[5])
else
  id = redis.call('XADD', KEYS[1], '*', 'user', ARGV[2], 'text', ARGV[3])
end
redis.call('SET', KEYS[2], id, 'NX')
local retention = tonumber(ARGV[1])
local excess = redis.call('XLEN', KEYS[1]) - retention
if excess > math.max(1, math.floor(retention / 10)) then
  local doomed = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  redis.call('SET', KEYS[3], doomed[#doomed][1])
  redis.call('XTRIM', KEYS[1], 'MAXLEN', retention)
end
return {id, 0}
"""

# A history read in one script, so the entries, the newest id, the epoch and
# the trimming mark all describe the same moment.
# ``max-deleted-entry-id`` covers XDEL (an operator removing a message),
# ``trimmed`` covers retention.
# KEYS: stream, born, trimmed. ARGV: since ('' for none), limit.
# Returns {born or nil, max_deleted, trimmed or nil, length, last_id or nil, entries}.
HISTORY = """
local born = redis.call('GET', KEYS[2])
local trimmed = redis.call('GET', KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {born, '0-0', trimmed, 0, false, {}}
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local max_deleted, length = '0-0', 0
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then max_deleted = info[i + 1]
  elseif info[i] == 'length' then length = info[i + 1] end
end
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
local entries = {}
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+')
elseif tonumber(ARGV[2]) > 0 then
  entries = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[2])
end
return {born, max_deleted, trimmed, length, newest and newest[1] or false, entries}
"""

# Make sure this node's group exists on a room's stream, and say where it stands.
# First subscription (cursor ''): create at the stream's end ('$'), atomically,
# so everything stored after subscribe() returns is delivered. Re-creation
# after the group vanished (Redis restarted empty, a janitor took it):
# at the node's cursor when the room's epoch is still the one the node knew,
# else at 0, since every entry of a new epoch is new to this node.
# KEYS: stream, born. ARGV: group, known born ('' unknown), cursor ('' first time).
# Returns {status ('created', 'reset' or 'exists'), group's last-delivered-id, born or nil}.
ENSURE_GROUP = """
local born = redis.call('GET', KEYS[2])
local start, status = '$', 'created'
if ARGV[3] ~= '' then
  if ARGV[2] ~= '' and born == ARGV[2] then start = ARGV[3] else start, status = '0', 'reset' end
end
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], start, 'MKSTREAM')
if type(made) == 'table' and made.err then
  if string.sub(made.err, 1, 9) ~= 'BUSYGROUP' then return made end
  status = 'exists'
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
"""

# Destroy a node's group on a room's stream; delete the stream too when it is
# an empty one that only a group's MKSTREAM created (never written, no groups left).
# KEYS: stream, born. ARGV: group. Returns 1 if a group was destroyed.
DROP_GROUP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local destroyed = redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
if redis.call('XLEN', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0
    and #redis.call('XINFO', 'GROUPS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1])
end
return destroyed
"""

# Record this node's heartbeat (Redis clock) and list nodes silent for too long.
# KEYS: heartbeat zset. ARGV: node, dead_after_ms.
# Returns {node, score, node, score, ...} of the silent ones.
HEARTBEAT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], ms, ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. (ms - tonumber(ARGV[2])), 'WITHSCORES')
"""

# Forget a dead node, unless it sent a heartbeat since the janitor looked.
# KEYS: heartbeat zset, the node's rooms set. ARGV: node, score seen, rooms cleaned...
# Returns 1 when the node was forgotten.
FORGET_NODE = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
for i = 3, #ARGV do redis.call('SREM', KEYS[2], ARGV[i]) end
if redis.call('SCARD', KEYS[2]) == 0 then redis.call('ZREM', KEYS[1], ARGV[1]) end
return 1
"""

# Set one node incarnation's connection counts in a room, keep the room's
# totals in step, and publish ``join``/``leave`` when a user's total leaves or
# reaches 0. Counts are absolute, so sending them again changes nothing: a
# node re-sends them all after an outage. With ``exact`` = '1' the listed
# users are the incarnation's whole share of the room and any other user it
# had goes (no users listed: the incarnation leaves the room; a janitor does
# this for dead ones).
# KEYS: members (the incarnation's, this room), users. ARGV: channel, exact, user, count, ...
# Returns how many notices it published.
SET_CONNECTIONS = """
local published = 0
local function set(user, count)
  local old = tonumber(redis.call('HGET', KEYS[1], user) or '0')
  if count == old then return end
  -- The total first: a script that fails is not undone, and should it fail
  -- here (a key of the wrong type), the node's count must not claim it was.
  local total = redis.call('HINCRBY', KEYS[2], user, count - old)
  if count > 0 then redis.call('HSET', KEYS[1], user, count) else redis.call('HDEL', KEYS[1], user) end
  local before = total - (count - old)
  if total <= 0 then redis.call('HDEL', KEYS[2], user) end
  if before <= 0 and total > 0 then
    redis.call('PUBLISH', ARGV[1], 'join:' .. user)
    published = published + 1
  elseif before > 0 and total <= 0 then
    redis.call('PUBLISH', ARGV[1], 'leave:' .. user)
    published = published + 1
  end
end
local listed = {}
for i = 3, #ARGV, 2 do
  listed[ARGV[i]] = true
  set(ARGV[i], tonumber(ARGV[i + 1]))
end
if ARGV[2] == '1' then
  for _, user in ipairs(redis.call('HKEYS', KEYS[1])) do
    if not listed[user] then set(user, 0) end
  end
end
return published
"""

# A node incarnation's presence heartbeat (Redis clock). An incarnation silent
# for longer than the timeout is dead for good: it is not refreshed again (its
# node must start over under a new one), so a janitor that saw it dead never
# races its return. A new incarnation (first = '1') is simply recorded.
# KEYS: presence zset. ARGV: incarnation, timeout_ms (0: never), first.
# Returns {1, now_ms, {incarnation, score, ...}} or {0, now_ms, {}} when it is dead.
PRESENCE_BEAT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local timeout = tonumber(ARGV[2])
if ARGV[3] ~= '1' then
  local last = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if not last or (timeout > 0 and ms - tonumber(last) > timeout) then return {0, ms, {}} end
end
redis.call('ZADD', KEYS[1], ms, ARGV[1])
return {1, ms, redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')}
"""

# A typing notice, unless the user had one published in the last window_ms (on any node).
# KEYS: typing key. ARGV: channel, user, window_ms. Returns 1 if published.
TYPING = """
if redis.call('SET', KEYS[1], '1', 'PX', ARGV[3], 'NX') then
  redis.call('PUBLISH', ARGV[1], 'typing:' .. ARGV[2])
  return 1
end
return 0
"""
