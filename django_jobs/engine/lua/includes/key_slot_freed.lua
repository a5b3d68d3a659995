-- A job with limit key base lk (includes/key_limits.lua) left active: free its slot and move
-- the key's next parked job back to wait at its old place in line (its score in lk .. 'p').
-- Parked entries that are no longer scheduled (cancelled, or promoted by their due time) are skipped.
local function key_slot_freed(lk, job_id, job_prefix, wait_key, scheduled_key, events_key, maxlen, marker_key)
  if redis.call('ZREM', lk .. 'a', job_id) == 0 then return end
  for _ = 1, 10 do
    local nxt = redis.call('ZPOPMIN', lk .. 'p')
    if not nxt[1] then return end
    local id = nxt[1]
    if redis.call('ZREM', scheduled_key, id) == 1 then
      redis.call('ZADD', wait_key, nxt[2], id)
      redis.call('HSET', job_prefix .. id, 's', 'waiting', 'ws', nxt[2])
      redis.call('HDEL', job_prefix .. id, 'run')
      emit(events_key, maxlen, 'waiting', id, 'why', 'slot_freed')
      wake(marker_key)
      return
    end
  end
end
