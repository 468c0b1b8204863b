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
-- One read per node, not per channel and node.
local counts = {}
for _, node in ipairs(nodes) do
  if node ~= self_node then
    local h = redis.call('HGETALL', prefix .. 'n:' .. node)
    for i = 1, #h, 2 do
      counts[h[i]] = (counts[h[i]] or 0) + tonumber(h[i + 1])
    end
  end
end
local out = {}
for _, ch in ipairs(names) do
  local subscribers = counts[ch] or 0
  out[#out + 1] = ch
  out[#out + 1] = redis.call('XLEN', prefix .. 's:' .. ch)
  out[#out + 1] = redis.call('HGET', prefix .. 'm:' .. ch, 'last') or ''
  out[#out + 1] = subscribers
end
return out
