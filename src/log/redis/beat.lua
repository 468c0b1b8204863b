-- A node's heartbeat: it is alive (the node set, shared with anything else
-- that needs to know which nodes run), its subscriber count per channel
-- (for the service-wide counts), and, when due, the expiry of the channels
-- it has subscribers on.
--
-- KEYS: nodes (zset), this node's counts (hash), channels (zset)
-- ARGV: prefix, node, node ttl ms, channel key lifetime ms (see publish.lua),
--       counts changed (0/1),
--       refresh channel ttls (0/1), log length, then pairs: channel, count
--
-- A node whose heartbeat expired is gone: the first heartbeat to see it
-- (this script is atomic, so exactly one) counts its presence connections
-- out (presence.lua, prepended). Returns 1 when this node itself had been
-- declared gone (it must end its streams: its members were counted out).
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, node = ARGV[1], ARGV[2]
local node_ttl, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local log_len = ARGV[7]
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now_ms)) do
  presence_gone(prefix, log_len, dead)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
redis.call('ZADD', KEYS[1], now_ms + node_ttl, node)
if ARGV[5] == '1' then
  redis.call('DEL', KEYS[2])
  for i = 8, #ARGV, 2 do
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[2], node_ttl)
if ARGV[6] == '1' then
  for i = 8, #ARGV, 2 do
    local ch = ARGV[i]
    if redis.call('PEXPIRE', prefix .. 'm:' .. ch, ttl) == 1 then
      redis.call('PEXPIRE', prefix .. 's:' .. ch, ttl)
      redis.call('ZADD', KEYS[3], 'XX', now_ms + ttl, ch)
    end
  end
end
return redis.call('DEL', prefix .. 'dead:' .. node)
