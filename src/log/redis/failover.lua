-- Run on every new connection, before anything else is written through it
-- (SPEC §14): does this Redis hold the newest entry this node has seen
-- (published or read from the log)? A promoted replica that had not
-- received the last writes of the old primary does not (nor does a Redis
-- restarted from an older snapshot).
--
-- * Its counter is below that id: nobody has issued ids past the loss yet.
--   Raise the counter, so no id is issued twice, and the floor (load.lua),
--   so a subscriber resuming from before the lost ids is told; a node that
--   applied fewer of them finds its chain broken and starts over.
-- * Its counter is past that id but the entry is missing: another node
--   already published on it, so its streams may have gone on past the hole
--   unaware. Append a gap record (kind g) to the log: every node that reads
--   it ends its streams, and the floor is raised to its id, so every client
--   resuming from before it gets a herald.gap.
-- * Otherwise (nothing seen, the entry is there, or the log was trimmed
--   past it so nothing can be told, or the floor is already above it:
--   announced) nothing changes.
--
-- KEYS: seq, log, floor   ARGV: the newest id seen (0: none), log length
-- Returns 0 (nothing lost), 1 (counter raised) or 2 (gap record appended).
local seen = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if seen == 0 or not v then
  return 0 -- Redis lost everything: the epoch tells (start.lua)
end
v = tonumber(v)
local floor = tonumber(redis.call('GET', KEYS[3]) or 0)
if v < seen then
  redis.call('SET', KEYS[1], ARGV[1])
  if floor < seen then
    redis.call('SET', KEYS[3], ARGV[1])
  end
  return 1
end
if floor >= seen then
  return 0
end
local sid = ARGV[1] .. '-0'
if #redis.call('XRANGE', KEYS[2], sid, sid) > 0 then
  return 0
end
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
if not first or tonumber(string.sub(first[1], 1, -3)) > seen then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local id = string.format('%d', math.max(v + 1, now))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-0', 'k', 'g', 'p',
  string.format('%d', v))
redis.call('SET', KEYS[1], id)
redis.call('SET', KEYS[3], id)
return 2
