-- A stream of `sub` on `ch` ended on `node`: counts it out and appends the
-- `x` record; nothing (0) if the node holds no such connection (it was
-- declared gone meanwhile, and its connections were counted out then).
-- KEYS: none   ARGV: prefix, log length, node, channel, sub
local prefix, log_len, node, ch, sub = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key, field = prefix .. 'pn:' .. node, ch .. ' ' .. sub
local c = tonumber(redis.call('HGET', key, field) or 0)
if c <= 0 then
  return 0
end
if c == 1 then
  redis.call('HDEL', key, field)
else
  redis.call('HINCRBY', key, field, -1)
end
local n = redis.call('HINCRBY', prefix .. 'pc:' .. ch, sub, -1)
if n <= 0 then
  redis.call('HDEL', prefix .. 'pc:' .. ch, sub)
  n = 0
end
return presence_append(prefix, log_len, {'k', 'x', 'c', ch, 's', sub, 'n', string.format('%d', n)})
