-- Move scheduled jobs whose run-at time has come into the wait ZSET.
-- Returns the number promoted.
local function promote_due(scheduled_key, wait_key, meta_key, events_key, job_prefix, now_ms, limit, maxlen)
  local due = redis.call('ZRANGEBYSCORE', scheduled_key, '-inf', now_ms, 'LIMIT', 0, limit)
  for i = 1, #due do
    local job_key = job_prefix .. due[i]
    -- 's' says the job still exists; a missing 'p' is priority 0 (includes/job_store). (Earlier
    -- releases read 'p' alone and dropped a job without it.)
    local f = redis.call('HMGET', job_key, 's', 'p')
    if f[1] then
      local score = next_wait_score(meta_key, f[2] or 0)
      redis.call('ZADD', wait_key, score, due[i])
      redis.call('HSET', job_key, 's', 'waiting', 'ws', score)
      emit(events_key, maxlen, 'waiting', due[i])
    end
  end
  if #due > 0 then
    redis.call('ZREM', scheduled_key, unpack(due))
  end
  return #due
end
