-- Publishes a batch: issues ids from one counter, appends each event to its
-- channel's stream (trimmed exactly to the history limits, recording the
-- mark) and to the shared log every node reads. All or nothing: the only
-- refusal (channel limit) is decided before the first write.
--
-- KEYS: seq, log, channels (zset name -> expiry ms), nodes (zset node ->
--       expiry ms), then per item: stream, meta
-- ARGV: prefix, self node, max events, max bytes, ttl ms, log length,
--       max channels, then per item: channel, fields, data length
-- Returns 0 when the batch would pass the channel limit, otherwise one
-- {id, subscribers on other nodes} per item.
--
-- Ids are doubles in Lua: exact below 2^53 (Unix microseconds stay below it
-- until about 2255); always written with %d, never tostring.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local prefix, self_node = ARGV[1], ARGV[2]
local max_events, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, log_len, max_channels = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local n_items = (#ARGV - 7) / 3

local new, seen = 0, {}
for i = 1, n_items do
  local ch = ARGV[5 + 3 * i]
  if not seen[ch] and redis.call('EXISTS', KEYS[4 + 2 * i]) == 0 then
    new = new + 1
  end
  seen[ch] = true
end
if new > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[3]) + new > max_channels then
    return 0
  end
end

local v = redis.call('GET', KEYS[1])
-- A lost counter (Redis restarted empty) starts from the clock, as a
-- restarted single node does: new ids stay above the old ones, and the
-- log's broken chain tells every node.
local last = v and tonumber(v) or now
local nodes = redis.call('ZRANGEBYSCORE', KEYS[4], now_ms, '+inf')
local out = {}
for i = 1, n_items do
  local ch, fields, n = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local stream, meta = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local id = math.max(last + 1, now)
  local sid = string.format('%d', id)
  local prev = string.format('%d', last)
  if redis.call('EXISTS', meta) == 0 then
    -- A new channel: it cannot replay anything issued before it.
    redis.call('HSET', meta, 'mark', prev, 'bytes', 0)
  end
  redis.call('XADD', stream, sid .. '-0', 'b', fields, 'n', n)
  local bytes = redis.call('HINCRBY', meta, 'bytes', n)
  local len = redis.call('XLEN', stream)
  while len > max_events or (bytes > max_bytes and len > 1) do
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', stream, oldest[1])
    bytes = bytes - tonumber(oldest[2][4])
    redis.call('HSET', meta, 'mark', string.sub(oldest[1], 1, -3))
    len = len - 1
  end
  redis.call('HSET', meta, 'bytes', bytes, 'last', sid)
  redis.call('PEXPIRE', stream, ttl)
  redis.call('PEXPIRE', meta, ttl)
  redis.call('ZADD', KEYS[3], now_ms + ttl, ch)
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', log_len, sid .. '-0',
    'c', ch, 'p', prev, 'b', fields, 'n', n)
  local subscribers = 0
  for _, node in ipairs(nodes) do
    if node ~= self_node then
      subscribers = subscribers + tonumber(redis.call('HGET', prefix .. 'n:' .. node, ch) or 0)
    end
  end
  out[i] = {sid, subscribers}
  last = id
end
redis.call('SET', KEYS[1], string.format('%d', last))
return out
