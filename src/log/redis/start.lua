-- Where a node's reader starts: makes sure the id counter and the epoch
-- (a random name for this incarnation of Redis's data) exist, and returns
-- both. A changed epoch means Redis lost what the node was following.
--
-- A node that has applied ids up to L while Redis's counter is below L
-- sees Redis rolled back (restarted from an older snapshot or AOF): the ids
-- in between were issued and are gone. It raises the counter to L, so no id
-- is issued twice, and the floor to L: every channel's mark is at least the
-- floor (load.lua), so a subscriber that resumes from before it is told it
-- may have missed something.
--
-- KEYS: seq, epoch, floor   ARGV: a fresh random epoch, L (0 if none)
local v = redis.call('GET', KEYS[1])
if not v then
  local t = redis.call('TIME')
  v = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[1], v)
end
local applied = tonumber(ARGV[2])
local rolled_back = 0
if applied > tonumber(v) then
  v = ARGV[2]
  redis.call('SET', KEYS[1], v)
  local floor = redis.call('GET', KEYS[3])
  if not floor or tonumber(floor) < applied then
    redis.call('SET', KEYS[3], v)
  end
  rolled_back = 1
end
redis.call('SET', KEYS[2], ARGV[1], 'NX')
return {v, redis.call('GET', KEYS[2]), rolled_back}
