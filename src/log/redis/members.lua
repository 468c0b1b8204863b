-- Every presence channel's members and counts, with the log position they
-- stand at: a node starting (or starting over) loads them, then applies
-- the records after that position.
-- KEYS: none   ARGV: prefix
-- Returns: seq, then per channel: name, pm (flat), pc (flat)
local prefix = ARGV[1]
local out = {redis.call('GET', prefix .. 'seq') or '0'}
for _, ch in ipairs(redis.call('SMEMBERS', prefix .. 'pchans')) do
  out[#out + 1] = ch
  out[#out + 1] = redis.call('HGETALL', prefix .. 'pm:' .. ch)
  out[#out + 1] = redis.call('HGETALL', prefix .. 'pc:' .. ch)
end
return out
