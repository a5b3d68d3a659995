--[[
  flow_ack: remove delivered outbox entries (the relay calls it after flow_deliver, the
  producer of a flow written in parts after delivering its create entries), each only if it is
  still the one delivered: a newer step of the same member (another 'seq') stays.
  KEYS[1] outbox HASH  KEYS[2] the due ZSET of those members (outbox_due; outbox_parts for
  create entries, members 'c|...')
  ARGV pairs: member, seq delivered
  Returns: how many were removed (one pair: 1 removed | 0 gone already (a replay) or replaced
           by a newer entry)
]]
local removed = 0
for i = 1, #ARGV, 2 do
  local member = ARGV[i]
  local entry = redis.call('HGET', KEYS[1], member)
  local seq
  if entry and string.sub(member, 1, 2) == 'c|' then
    seq = string.match(entry, '^{"seq":(%d+),') -- a create entry starts with its seq (flow_enqueue_part)
  elseif entry then
    seq = tostring(cjson.decode(entry).seq)
  end
  if seq and seq == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
    removed = removed + 1
  end
end
return removed
