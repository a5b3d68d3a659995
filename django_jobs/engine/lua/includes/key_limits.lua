-- Per-key limits (docs/flow-control.md): a job enqueued with a limit key carries in its hash
--   'lk' the base name of its key's structures ("djj:{queue}:lim:<key>:", same hash tag),
--   'lc' concurrency (0 none), 'lr' / 'lp' at most lr starts per lp ms (lr 0 none).
-- Structures, all under lk:
--   lk .. 'a' ZSET the key's active jobs (score claim ms); a member no longer in the queue's
--             active set (and not claimed by this very fetch) is dropped when counted, so a
--             missed release cannot leak a slot
--   lk .. 'r' ZSET starts inside the key's rate window (score start ms; PEXPIRE = window)
--   lk .. 'h' STRING no job of the key starts before this ms (RateLimited(backoff="key"); PX)
--   lk .. 'p' ZSET parked jobs of the key (score wait score): over-limit jobs go to the
--             scheduled state (never counted as an attempt) and are listed here, so a freed
--             slot promotes the next one at once (key_slot_freed); their due time is only the
--             fallback. Other keys' jobs keep flowing: a parked job is out of the wait line.

local KEY_PARK_FALLBACK_MS = 5000
local KEY_PARK_FALLBACK_MAX_MS = 3600000

-- Return 0 when the job may start now, else the ms until the key may allow it.
local function key_wait_ms(lk, lc, lr, lp, active_key, now_ms)
  local hold = tonumber(redis.call('GET', lk .. 'h'))
  if hold and hold > now_ms then return hold - now_ms end
  if lc > 0 then
    local members = redis.call('ZRANGE', lk .. 'a', 0, -1, 'WITHSCORES')
    local live = 0
    for i = 1, #members, 2 do
      -- Claimed by this same fetch (score now_ms): not in active yet, still live.
      if tonumber(members[i + 1]) >= now_ms or redis.call('ZSCORE', active_key, members[i]) then
        live = live + 1
      else
        redis.call('ZREM', lk .. 'a', members[i])
      end
    end
    if live >= lc then
      -- A freed slot brings parked jobs back one by one, oldest first; the due time is only a
      -- fallback, spread by position so a deep backlog is not re-checked all at once.
      local fallback = KEY_PARK_FALLBACK_MS + math.floor(redis.call('ZCARD', lk .. 'p') / lc) * 1000
      if fallback > KEY_PARK_FALLBACK_MAX_MS then fallback = KEY_PARK_FALLBACK_MAX_MS end
      return fallback
    end
  end
  if lr > 0 then
    redis.call('ZREMRANGEBYSCORE', lk .. 'r', '-inf', now_ms - lp)
    if redis.call('ZCARD', lk .. 'r') >= lr then
      local oldest = redis.call('ZRANGE', lk .. 'r', 0, 0, 'WITHSCORES')
      local wait_ms = tonumber(oldest[2]) + lp - now_ms
      if wait_ms < 1 then wait_ms = 1 end
      -- Stagger the parked jobs over the windows they will need, so they do not all wake at once.
      return wait_ms + math.floor(redis.call('ZCARD', lk .. 'p') / lr) * lp
    end
  end
  return 0
end

-- fields = the job's HMGET in fetch, with 'lk' 'lc' 'lr' 'lp' at positions 8..11.
-- Returns true when the job was parked (not claimed): moved to scheduled, listed in lk .. 'p'.
local function key_park(fields, job_key, job_id, score, scheduled_key, active_key, events_key, maxlen, now_ms)
  local lk = fields[8]
  local wait_ms = key_wait_ms(lk, tonumber(fields[9]) or 0, tonumber(fields[10]) or 0, tonumber(fields[11]) or 1000,
                              active_key, now_ms)
  if wait_ms == 0 then return false end
  redis.call('ZADD', scheduled_key, now_ms + wait_ms, job_id)
  redis.call('ZADD', lk .. 'p', score, job_id)
  redis.call('HSET', job_key, 's', 'scheduled', 'run', now_ms + wait_ms)
  emit(events_key, maxlen, 'limited', job_id, 'delay', wait_ms)
  return true
end

-- The job starts (claimed by fetch with lease token): count it against its key.
local function key_started(fields, job_id, token, now_ms)
  local lk = fields[8]
  redis.call('ZREM', lk .. 'p', job_id)
  if (tonumber(fields[9]) or 0) > 0 then redis.call('ZADD', lk .. 'a', now_ms, job_id) end
  local lr, lp = tonumber(fields[10]) or 0, tonumber(fields[11]) or 1000
  if lr > 0 then
    redis.call('ZADD', lk .. 'r', now_ms, token)
    redis.call('PEXPIRE', lk .. 'r', lp)
  end
end
