-- A running job raised RateLimited: back to scheduled after delay_ms without counting the
-- attempt (the claim's +1 is undone). The token stays, so a replayed settle is recognised.
-- scope 'queue' also holds the whole queue back: no job of it starts before now + delay_ms;
-- scope 'key' holds the job's limit key back (lk: its base name, includes/key_limits), if it has one.
local function rate_limited(job_key, job_id, scheduled_key, meta_key, now_ms, delay_ms, scope, lk)
  if delay_ms < 1 then delay_ms = 1 end
  redis.call('HINCRBY', job_key, 'a', -1)
  redis.call('ZADD', scheduled_key, now_ms + delay_ms, job_id)
  redis.call('HSET', job_key, 's', 'scheduled', 'run', now_ms + delay_ms)
  if scope == 'queue' then
    local hold = tonumber(redis.call('HGET', meta_key, 'hold')) or 0
    if now_ms + delay_ms > hold then redis.call('HSET', meta_key, 'hold', now_ms + delay_ms) end
  elseif scope == 'key' and lk then
    local hold = tonumber(redis.call('GET', lk .. 'h')) or 0
    if now_ms + delay_ms > hold then redis.call('SET', lk .. 'h', now_ms + delay_ms, 'PX', delay_ms) end
  end
end
