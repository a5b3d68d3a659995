-- Delete finished jobs past their keep-until score, then beyond the count limit.
-- The finished ZSETs are scored by the time a job may be deleted (finish + keep),
-- so a per-job retention override is just a different score. Bounded work per call
-- (limit: jobs per rule, TRIM_BATCH when nil). now_ms: the server time, or nil to read it
-- only when there is something to trim.
-- While a database mirror holds the queue (includes/mirror), only jobs it recorded are
-- deleted (its 'rec:' set), unless more than its cap of this set's jobs wait unrecorded: the
-- mirror is that far behind (or gone), and retention goes on as without it.
--@include now
--@include mirror
local TRIM_BATCH = 200
-- A finished set that a call added nothing to (completions kept for no time: settle.lua) holds
-- only jobs kept earlier; it is trimmed on one such call in TRIM_EVERY, not on each.
local TRIM_EVERY = 32

local function trim_delete(set_key, rec_key, job_prefix, ids)
  if #ids == 0 then return end
  for i = 1, #ids do
    redis.call('DEL', job_prefix .. ids[i])
  end
  redis.call('ZREM', set_key, unpack(ids))
  if rec_key then redis.call('ZREM', rec_key, unpack(ids)) end
end

local function trim_finished(set_key, job_prefix, now_ms, max_count, limit)
  limit = limit or TRIM_BATCH
  local base = string.sub(job_prefix, 1, -5)
  local cap = mirror_cap(base)
  if cap then
    now_ms = now_ms or server_now_ms()
    local rec_key = recorded_key(base, set_key)
    local unrecorded = redis.call('ZCARD', set_key) - redis.call('ZCARD', rec_key)
    if unrecorded <= cap then
      -- Only recorded jobs still in the set (a job retried since it was recorded is not).
      local function still(ids)
        local kept = {}
        for i = 1, #ids do
          if redis.call('ZSCORE', set_key, ids[i]) then kept[#kept + 1] = ids[i]
          else redis.call('ZREM', rec_key, ids[i]) end
        end
        return kept
      end
      trim_delete(set_key, rec_key, job_prefix,
                  still(redis.call('ZRANGEBYSCORE', rec_key, '-inf', now_ms, 'LIMIT', 0, limit)))
      if max_count > 0 then
        local excess = redis.call('ZCARD', set_key) - max_count
        if excess > 0 then
          if excess > limit then excess = limit end
          trim_delete(set_key, rec_key, job_prefix, still(redis.call('ZRANGE', rec_key, 0, excess - 1)))
        end
      end
      return
    end
    -- Too far behind: fall through, and keep the recorded set in step.
    local expired = redis.call('ZRANGEBYSCORE', set_key, '-inf', now_ms, 'LIMIT', 0, limit)
    trim_delete(set_key, rec_key, job_prefix, expired)
    if max_count > 0 then
      local excess = redis.call('ZCARD', set_key) - max_count
      if excess > 0 then
        if excess > limit then excess = limit end
        trim_delete(set_key, rec_key, job_prefix, redis.call('ZRANGE', set_key, 0, excess - 1))
      end
    end
    return
  end
  -- One ZCARD first: an empty set (every job kept for no time, as fire-and-forget settles leave
  -- it) costs one command and no clock; else the count after the expired ones left is
  -- known without a second ZCARD (they were members, each removed once).
  local size = redis.call('ZCARD', set_key)
  if size == 0 then return end
  now_ms = now_ms or server_now_ms()
  local expired = redis.call('ZRANGEBYSCORE', set_key, '-inf', now_ms, 'LIMIT', 0, limit)
  for i = 1, #expired do
    redis.call('DEL', job_prefix .. expired[i])
  end
  if #expired > 0 then
    redis.call('ZREM', set_key, unpack(expired))
  end
  if max_count > 0 then
    local excess = size - #expired - max_count
    if excess > 0 then
      if excess > limit then excess = limit end
      local oldest = redis.call('ZRANGE', set_key, 0, excess - 1)
      for i = 1, #oldest do
        redis.call('DEL', job_prefix .. oldest[i])
      end
      redis.call('ZREMRANGEBYRANK', set_key, 0, excess - 1)
    end
  end
end
