-- Delete finished jobs past their keep-until score, then beyond the count limit.
-- The finished ZSETs are scored by the time a job may be deleted (finish + keep),
-- so a per-job retention override is just a different score. Bounded work per call.
local TRIM_BATCH = 200
local function trim_finished(set_key, job_prefix, now_ms, max_count)
  local expired = redis.call('ZRANGEBYSCORE', set_key, '-inf', now_ms, 'LIMIT', 0, TRIM_BATCH)
  for i = 1, #expired do
    redis.call('DEL', job_prefix .. expired[i])
  end
  if #expired > 0 then
    redis.call('ZREM', set_key, unpack(expired))
  end
  if max_count > 0 then
    local excess = redis.call('ZCARD', set_key) - max_count
    if excess > 0 then
      if excess > TRIM_BATCH then excess = TRIM_BATCH end
      local oldest = redis.call('ZRANGE', set_key, 0, excess - 1)
      for i = 1, #oldest do
        redis.call('DEL', job_prefix .. oldest[i])
      end
      redis.call('ZREMRANGEBYRANK', set_key, 0, excess - 1)
    end
  end
end
