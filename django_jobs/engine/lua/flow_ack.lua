--[[
  flow_ack: remove a delivered outbox entry (the relay calls it after flow_deliver), only if
  it is still the one delivered: a newer step of the same member (another 'seq') stays.
  KEYS[1] outbox HASH  KEYS[2] outbox_due ZSET
  ARGV[1] member  ARGV[2] seq delivered
  Returns: 1 removed | 0 gone already (a replay) or replaced by a newer entry
]]
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry or tostring(cjson.decode(entry).seq) ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
