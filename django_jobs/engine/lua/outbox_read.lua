--[[
  outbox_read: the outbox entries of a queue a relay may deliver now, with their JSON
  (engine/relay.py; called only while create entries exist: an outbox without them is read
  with ZRANGEBYSCORE and HMGET).
  KEYS[1] outbox HASH  KEYS[2] outbox_due ZSET (flow steps: due when recorded)
  KEYS[3] outbox_parts ZSET (create entries of flows written in parts: due once the producer's
  grace is over, the score)
  ARGV[1] limit (members read from each set)  ARGV[2] the parked score (members at it or above
  are never read)  ARGV[3] now ms ('0': the server time; tests pass a later one)
  Returns: {member, entry JSON or false (gone meanwhile), ...}, steps first; the relay delivers
           them in the order of their 'seq'
]]
--@include now
local limit, parked = tonumber(ARGV[1]), ARGV[2]
local members = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. parked, 'LIMIT', 0, limit)
if redis.call('EXISTS', KEYS[3]) == 1 then
  local now_ms = tonumber(ARGV[3])
  if now_ms == 0 then now_ms = server_now_ms() end
  if now_ms >= tonumber(parked) then now_ms = '(' .. parked end
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now_ms, 'LIMIT', 0, limit)) do
    members[#members + 1] = m
  end
end
if #members == 0 then return {} end
local entries = redis.call('HMGET', KEYS[1], unpack(members))
local reply = {}
for i = 1, #members do
  reply[#reply + 1] = members[i]
  reply[#reply + 1] = entries[i]
end
return reply
