-- Publishes a batch: issues ids from one counter, appends each event to its
-- channel's stream (trimmed exactly to the history limits, recording the
-- mark) and to the shared log every node reads. All or nothing: the only
-- refusal (channel limit) is decided before the first write. Each
-- redis.call costs about a microsecond of Lua overhead on top of the
-- command, so the channel's counters are kept in its meta hash and read
-- once, rather than asked of the stream.
--
-- KEYS: seq, log, channels (zset name -> expiry ms), nodes (zset node ->
--       expiry ms), then per item: stream, meta; then, for a publish with an
--       idempotency key, the key's own name
-- ARGV: prefix, self node, max events, max bytes, key lifetime ms (1.25 x
--       --channel-ttl: keys are renewed at most every --channel-ttl/4, so
--       a channel lives between one and 1.25 TTLs after its last use), log length,
--       max channels, then per item: channel, fields, data length; then,
--       with an idempotency key: the request's fingerprint (32 hex digits),
--       the window in ms, and per item the subscribers on the calling node
-- Returns 0 when the batch would pass the channel limit, otherwise one
-- {id, subscribers on other nodes} per item. With an idempotency key: -1
-- when the key was kept for another request, {'r', kept} when it was kept
-- for this one (nothing is published: kept is what the first call
-- recorded, "<fingerprint> <id>:<subscribers> ..."), and otherwise rows
-- whose subscribers count every node, recorded under the key in this same
-- atomic step for the window.
--
-- The answer (ids, subscribers) is worked out before the first write, so
-- that with a key one command both looks the key up and records it (SET
-- NX GET, Redis 7): if it was kept already, that SET wrote nothing and
-- neither does the script. Nothing can fail between the reads and the
-- writes, and a script's writes past its first are not refused even at
-- maxmemory, so the key is recorded if and only if its events are.
--
-- Ids are doubles in Lua: exact below 2^53 (Unix microseconds stay below it
-- until about 2255); always written with %d, never tostring.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local prefix, self_node = ARGV[1], ARGV[2]
local max_events, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
local ttl, log_len, max_channels = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local renew_every = math.floor(ttl / 5)
local n_items = math.floor((#KEYS - 4) / 2)
local idem = KEYS[5 + 2 * n_items]
local extra = 7 + 3 * n_items
-- The answer to a request whose key was kept already: nothing published.
local function kept_answer(kept)
  if string.sub(kept, 1, 32) == ARGV[extra + 1] then
    -- A write (same expiry), so a WAIT after this call covers the first
    -- publish as well, whichever connection made it (SPEC §14).
    local left = redis.call('PTTL', idem)
    if left > 0 then redis.call('PEXPIRE', idem, left) end
    return {'r', kept}
  end
  return -1
end

-- Each channel's meta hash (mark, bytes and count retained, last id),
-- read once; nil for a channel that does not exist yet.
local metas, new = {}, 0
for i = 1, n_items do
  local ch = ARGV[5 + 3 * i]
  if metas[ch] == nil then
    local m = redis.call('HMGET', KEYS[4 + 2 * i], 'mark', 'bytes', 'count', 'renew')
    if m[1] then
      metas[ch] = {mark = m[1], bytes = tonumber(m[2] or 0), count = tonumber(m[3] or 0),
                   renew = tonumber(m[4] or 0)}
    else
      metas[ch] = false
      new = new + 1
    end
  end
end
if new > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now_ms)
  if redis.call('ZCARD', KEYS[3]) + new > max_channels then
    -- A retry of a kept publish is answered even so.
    local kept = idem and redis.call('GET', idem)
    if kept then return kept_answer(kept) end
    return 0
  end
end

local v = redis.call('GET', KEYS[1])
-- A lost counter (Redis restarted empty) starts from the clock, as a
-- restarted single node does: new ids stay above the old ones, and the
-- log's broken chain tells every node.
local last = v and tonumber(v) or now
local nodes = redis.call('ZRANGEBYSCORE', KEYS[4], now_ms, '+inf')
-- The answer first: each item's id and its subscribers on the other
-- nodes (with a key, on every node: the calling node's count is passed).
local ids, out = {}, {}
local id = last
for i = 1, n_items do
  id = math.max(id + 1, now)
  ids[i] = id
  local ch = ARGV[5 + 3 * i]
  local subscribers = 0
  for _, node in ipairs(nodes) do
    if node ~= self_node then
      subscribers = subscribers + tonumber(redis.call('HGET', prefix .. 'n:' .. node, ch) or 0)
    end
  end
  if idem then
    subscribers = subscribers + tonumber(ARGV[extra + 2 + i])
  end
  out[i] = {string.format('%d', id), subscribers}
end
if idem then
  local kept
  if n_items == 1 then
    kept = ARGV[extra + 1] .. ' ' .. out[1][1] .. ':' .. string.format('%d', out[1][2])
  else
    kept = {ARGV[extra + 1]}
    for i = 1, n_items do
      kept[i + 1] = out[i][1] .. ':' .. string.format('%d', out[i][2])
    end
    kept = table.concat(kept, ' ')
  end
  -- Looks the key up and records it in one command: written only if it
  -- was not kept yet, and then nothing else is.
  local before = redis.call('SET', idem, kept, 'NX', 'GET', 'PX', ARGV[extra + 2])
  if before then return kept_answer(before) end
end

for i = 1, n_items do
  local ch, fields, n = ARGV[5 + 3 * i], ARGV[6 + 3 * i], ARGV[7 + 3 * i]
  local stream, meta = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local sid = out[i][1]
  local prev = string.format('%d', last)
  local m = metas[ch]
  if not m then
    -- A new channel: it cannot replay anything issued before it.
    m = {mark = prev, bytes = 0, count = 0, renew = 0}
    metas[ch] = m
  end
  -- A stream created now has no expiry yet; otherwise renew when due.
  local renew = m.count == 0 or now_ms >= m.renew
  redis.call('XADD', stream, sid .. '-0', 'b', fields, 'n', n)
  m.bytes = m.bytes + tonumber(n)
  m.count = m.count + 1
  while m.count > max_events or (m.bytes > max_bytes and m.count > 1) do
    local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', stream, oldest[1])
    m.bytes = m.bytes - tonumber(oldest[2][4])
    m.mark = string.sub(oldest[1], 1, -3)
    m.count = m.count - 1
  end
  if renew then
    m.renew = now_ms + renew_every
  end
  redis.call('HSET', meta, 'mark', m.mark, 'bytes', m.bytes, 'count', m.count, 'last', sid,
    'renew', m.renew)
  if renew then
    redis.call('PEXPIRE', stream, ttl)
    redis.call('PEXPIRE', meta, ttl)
    redis.call('ZADD', KEYS[3], now_ms + ttl, ch)
  end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', log_len, sid .. '-0',
    'c', ch, 'p', prev, 'b', fields, 'n', n)
  last = ids[i]
end
redis.call('SET', KEYS[1], string.format('%d', last))
return out
