-- Reads channels' histories for a node about to serve them: the mark and
-- the retained events. A channel that does not exist is created (its mark
-- is the newest id issued so far), within the channel limit.
--
-- A channel's mark is at least the floor: ids up to it may have been lost
-- when Redis rolled back (start.lua).
--
-- KEYS: seq, channels (zset), floor, then per channel: stream, meta
-- ARGV: key lifetime ms (see publish.lua), max channels, then the channel names
-- Returns 0 past the channel limit, otherwise per channel: mark, entries.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local ttl, max_channels = tonumber(ARGV[1]), tonumber(ARGV[2])
local n = #ARGV - 2

local new = 0
for i = 1, n do
  if redis.call('EXISTS', KEYS[3 + 2 * i]) == 0 then new = new + 1 end
end
if new > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[2]) + new > max_channels then
    return 0
  end
end

local seq = redis.call('GET', KEYS[1])
if not seq then
  seq = string.format('%d', now)
  redis.call('SET', KEYS[1], seq)
end
local floor = tonumber(redis.call('GET', KEYS[3]) or 0)
local out = {}
for i = 1, n do
  local stream, meta = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  if redis.call('EXISTS', meta) == 0 then
    redis.call('HSET', meta, 'mark', seq, 'bytes', 0, 'count', 0)
  end
  redis.call('PEXPIRE', meta, ttl)
  redis.call('PEXPIRE', stream, ttl)
  redis.call('ZADD', KEYS[2], now_ms + ttl, ARGV[2 + i])
  local mark = redis.call('HGET', meta, 'mark')
  if tonumber(mark) < floor then
    mark = string.format('%d', floor)
  end
  out[#out + 1] = mark
  out[#out + 1] = redis.call('XRANGE', stream, '-', '+')
end
return out
