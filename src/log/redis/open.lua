-- A stream of `sub` opened on presence channel `ch` on `node`: counts it
-- in and appends the `o` record. Refused (-1) while the node was declared
-- gone and has not noticed yet.
-- KEYS: none (all under the prefix)   ARGV: prefix, log length, node,
-- node ttl ms, channel, sub, info
local prefix, log_len, node = ARGV[1], ARGV[2], ARGV[3]
local ch, sub, info = ARGV[5], ARGV[6], ARGV[7]
if redis.call('EXISTS', prefix .. 'dead:' .. node) == 1 then
  return -1
end
-- A node that has not beaten yet is in the node set from its first
-- member, so its death is noticed too.
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', prefix .. 'nodes', 'NX', now_ms + tonumber(ARGV[4]), node)
redis.call('HINCRBY', prefix .. 'pn:' .. node, ch .. ' ' .. sub, 1)
local n = redis.call('HINCRBY', prefix .. 'pc:' .. ch, sub, 1)
local old = redis.call('HGET', prefix .. 'pm:' .. ch, sub)
local join = '0'
if old ~= info then
  redis.call('HSET', prefix .. 'pm:' .. ch, sub, info)
  join = '1'
end
redis.call('SADD', prefix .. 'pchans', ch)
return presence_append(prefix, log_len,
  {'k', 'o', 'c', ch, 's', sub, 'i', info, 'n', string.format('%d', n), 'j', join})
