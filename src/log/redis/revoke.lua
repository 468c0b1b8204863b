-- A disconnect (SPEC §11), on top of presence.lua (for presence_append):
-- records its revocation, if it has one, in the hash of revocations in
-- force, and appends a `d` record to the log, chained like an event, so
-- every node ends its matching streams as it reads it (the origin node,
-- named in the record, has ended its own already).
--
-- The hash `revoked` (under the prefix) holds one field per revocation:
-- "s <at> <sub>" (tokens of sub issued at or before second `at`) or
-- "j <jti>", each with when it ends (Unix ms). A node loads it when its
-- reader connects; expired fields are dropped here, and the hash expires
-- with its last one.
--
-- KEYS: none
-- ARGV: prefix, log length, origin node, sub, channel, jti, at, until ms
--       ('' for each of sub, channel, jti, at, until that is not given)
local prefix, log_len, node = ARGV[1], ARGV[2], ARGV[3]
local sub, ch, jti, at, until_ms = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local key = prefix .. 'revoked'
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', key)
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now_ms then
    redis.call('HDEL', key, all[i])
  end
end
if until_ms ~= '' and tonumber(until_ms) > now_ms then
  local field
  if jti ~= '' then
    field = 'j ' .. jti
  else
    field = 's ' .. at .. ' ' .. sub
  end
  if tonumber(redis.call('HGET', key, field) or 0) < tonumber(until_ms) then
    redis.call('HSET', key, field, until_ms)
  end
  local ttl = tonumber(until_ms) - now_ms
  if redis.call('PTTL', key) < ttl then
    redis.call('PEXPIRE', key, ttl)
  end
end
local fields = {'k', 'd', 'o', node}
local given = {ds = sub, dc = ch, dj = jti, da = at, du = until_ms}
for _, name in ipairs({'ds', 'dc', 'dj', 'da', 'du'}) do
  if given[name] ~= '' then
    fields[#fields + 1] = name
    fields[#fields + 1] = given[name]
  end
end
return presence_append(prefix, log_len, fields)
