-- GET /channels for the whole service: every live channel with its
-- retained events, last id and the subscribers of the other live nodes.
--
-- KEYS: channels (zset), nodes (zset)   ARGV: prefix, self node
-- Returns flat: channel, retained, last id ('' if none), subscribers, ...
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local prefix, self_node = ARGV[1], ARGV[2]
local names = redis.call('ZRANGEBYSCORE', KEYS[1], now_ms, '+inf')
local nodes = redis.call('ZRANGEBYSCORE', KEYS[2], now_ms, '+inf')
local out = {}
for _, ch in ipairs(names) do
  local subscribers = 0
  for _, node in ipairs(nodes) do
    if node ~= self_node then
      subscribers = subscribers + tonumber(redis.call('HGET', prefix .. 'n:' .. node, ch) or 0)
    end
  end
  out[#out + 1] = ch
  out[#out + 1] = redis.call('XLEN', prefix .. 's:' .. ch)
  out[#out + 1] = redis.call('HGET', prefix .. 'm:' .. ch, 'last') or ''
  out[#out + 1] = subscribers
end
return out
