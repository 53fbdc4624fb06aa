-- Reading a room's entries, shared by change.lua, older.lua and history.lua
-- (scripts.py puts this file in front of each).
-- An entry's fields are a flat list: name, value, name, value ...
local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- The entries back from `from` (newest first) to the `limit`-th message still
-- shown: edits, deletions and deleted messages on the way do not count
-- (bus/changes.py). `hidden` holds the ids already known deleted, and gains
-- those met. Returns the entries, and true when the stream ran out first.
local function back_to_shown(stream, from, limit, hidden)
  local shown, taken = 0, {}
  while true do
    local batch = redis.call('XREVRANGE', stream, from, '-', 'COUNT', limit - shown + 16)
    if #batch == 0 then return taken, true end
    for _, entry in ipairs(batch) do
      local of = field(entry[2], 'of')
      if of then
        if field(entry[2], 'op') == 'delete' then hidden[of] = true end
      elseif not hidden[entry[1]] then
        if shown == limit then return taken, false end
        shown = shown + 1
      end
      taken[#taken + 1] = entry
    end
    from = '(' .. batch[#batch][1]
  end
end

