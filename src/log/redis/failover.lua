-- Run on every new connection, before anything else is written through it
-- (SPEC §14): does this Redis hold the newest entry this node has seen
-- (issued to its publishes, or read from the log)? A promoted replica that
-- had not received the last writes of the old primary does not, nor does a
-- Redis restarted from an older snapshot.
--
-- When it does not, the entries after its own last one are lost, and some
-- streams saw them while others did not, or went on past the hole unaware
-- (another node may have published on this Redis already). So a gap record
-- (kind g) is appended to the log, with an id above every id this node saw
-- (no id is issued twice), and the floor (load.lua) is raised to it: every
-- node that reads the record ends its streams, and every client resuming
-- from before it gets a herald.gap for its channels.
--
-- Nothing changes when nothing was seen, the entry is there, the log was
-- trimmed past it (nothing can be told; the readers' chain check covers
-- that), Redis lost everything (the epoch tells, start.lua), or the floor
-- is above it already (announced by another node).
--
-- KEYS: seq, log, floor   ARGV: the newest id seen (0: none), log length
-- Returns 1 when it appended a gap record, else 0.
local seen = tonumber(ARGV[1])
local v = redis.call('GET', KEYS[1])
if seen == 0 or not v then
  return 0
end
v = tonumber(v)
if tonumber(redis.call('GET', KEYS[3]) or 0) > seen then
  return 0
end
if v >= seen then
  local sid = ARGV[1] .. '-0'
  if #redis.call('XRANGE', KEYS[2], sid, sid) > 0 then
    return 0
  end
  local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)[1]
  if not first or tonumber(string.sub(first[1], 1, -3)) > seen then
    return 0
  end
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local id = string.format('%d', math.max(v + 1, seen + 1, now))
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], id .. '-0', 'k', 'g', 'p',
  string.format('%d', v))
redis.call('SET', KEYS[1], id)
redis.call('SET', KEYS[3], id)
return 1
