-- Shared by the presence scripts (prepended to each): service-wide
-- membership of presence-* channels and its records in the log.
--
-- Keys, under the prefix (all in the {h} slot):
--   pm:<channel>  hash sub -> info (JSON text): the members, those in their
--                 grace included
--   pc:<channel>  hash sub -> open connections in the service (absent: 0)
--   pn:<node>     hash "<channel> <sub>" -> that node's open connections
--                 (a channel name holds no space)
--   pchans        set of channels with members
--   dead:<node>   set when a node was declared gone, until it has noticed
--
-- Each change appends a record to the log, chained like an event (`p` is
-- the id issued before it) and taking an id from the same counter, so every
-- node applies it in order with the events: `k` is o (opened: c, s, i, n
-- the count now, j 1 when announced as a join), x (closed: c, s, n) or
-- l (left: c, s).

local function presence_append(prefix, log_len, fields)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local v = redis.call('GET', prefix .. 'seq')
  local last = v and tonumber(v) or now
  local id = math.max(last + 1, now)
  local sid = string.format('%d', id)
  local args = {prefix .. 'log', 'MAXLEN', '~', log_len, sid .. '-0',
                'p', string.format('%d', last)}
  for _, f in ipairs(fields) do args[#args + 1] = f end
  redis.call('XADD', unpack(args))
  redis.call('SET', prefix .. 'seq', sid)
  return sid
end

-- Counts out every connection `node` held (it died, or shut down), one
-- `x` record per member it held, and marks it gone.
local function presence_gone(prefix, log_len, node)
  local key = prefix .. 'pn:' .. node
  local held = redis.call('HGETALL', key)
  for i = 1, #held, 2 do
    local field, c = held[i], tonumber(held[i + 1])
    local sp = string.find(field, ' ', 1, true)
    local ch, sub = string.sub(field, 1, sp - 1), string.sub(field, sp + 1)
    local n = redis.call('HINCRBY', prefix .. 'pc:' .. ch, sub, -c)
    if n <= 0 then
      redis.call('HDEL', prefix .. 'pc:' .. ch, sub)
      n = 0
    end
    presence_append(prefix, log_len, {'k', 'x', 'c', ch, 's', sub, 'n', string.format('%d', n)})
  end
  redis.call('DEL', key)
  if #held > 0 then
    redis.call('SET', prefix .. 'dead:' .. node, '1', 'PX', 3600000)
  end
end
