-- The grace of `sub` on `ch` ended on some node: if it still has no
-- connection in the service and is still a member, removes it and appends
-- the `l` record, once; otherwise nothing (0). Every node's timer may ask.
-- KEYS: none   ARGV: prefix, log length, channel, sub
local prefix, log_len, ch, sub = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if tonumber(redis.call('HGET', prefix .. 'pc:' .. ch, sub) or 0) > 0 then
  return 0
end
if redis.call('HDEL', prefix .. 'pm:' .. ch, sub) == 0 then
  return 0
end
if redis.call('HLEN', prefix .. 'pm:' .. ch) == 0 then
  redis.call('SREM', prefix .. 'pchans', ch)
end
return presence_append(prefix, log_len, {'k', 'l', 'c', ch, 's', sub})
