-- Where a node's reader starts: makes sure the id counter and the epoch
-- (a random name for this incarnation of Redis's data) exist, and returns
-- both. A changed epoch means Redis lost what the node was following.
--
-- KEYS: seq, epoch   ARGV: a fresh random epoch, used if none exists
local v = redis.call('GET', KEYS[1])
if not v then
  local t = redis.call('TIME')
  v = string.format('%d', tonumber(t[1]) * 1000000 + tonumber(t[2]))
  redis.call('SET', KEYS[1], v)
end
redis.call('SET', KEYS[2], ARGV[1], 'NX')
return {v, redis.call('GET', KEYS[2])}
