-- The steps every transition body (includes/job_*.lua) is made of. q = queue_keys(base).
--@include queue
--@include emit
--@include wait_score
--@include unique_guard
--@include unique_release

local FINISHED_STATES = { completed = true, failed = true, cancelled = true }

-- A job leaves the set of its state (waiting, scheduled, waiting_children, or any other); a
-- job with a limit key (base lk) also leaves its key's parked list (includes/key_limits), where
-- it may still be listed when its due time promoted it.
local function job_unpend(q, job_id, state, lk)
  local set = q.set[state]
  if set then redis.call('ZREM', set, job_id) end
  if FINISHED_STATES[state] then redis.call('ZREM', recorded_key(q.base, set), job_id) end  -- includes/mirror
  if lk then redis.call('ZREM', lk .. 'p', job_id) end
end

-- A job ends: state 'completed' (result r), 'failed' or 'cancelled' at now_ms, kept keep_ms,
-- why = the reason or nil. Writes its hash and its event and adds it to its ended set, or,
-- with batch (a list), appends score, id to batch for one ZADD by the caller.
-- gone (a list, or nil): a job kept for no time (keep_ms 0) is not written at all: only its
-- event, and job_key goes to gone for one DEL by the caller at the end of its call (what
-- trim_finished would delete in the same call). Only where nothing reads the hash meanwhile
-- (no flow on the queue).
-- The bookkeeping around (unique key, per-key slot, flow) is the caller's body's.
local function job_ended(q, job_key, job_id, state, now_ms, keep_ms, why, batch, r, gone)
  if gone and keep_ms == 0 then
    gone[#gone + 1] = job_key
  elseif r then
    redis.call('HSET', job_key, 's', state, 'r', r, 'f', now_ms)
  elseif why then
    redis.call('HSET', job_key, 's', state, 'f', now_ms, 'why', why)
  else
    redis.call('HSET', job_key, 's', state, 'f', now_ms)
  end
  if gone and keep_ms == 0 then
    -- Deleted by the caller.
  elseif batch then
    batch[#batch + 1] = now_ms + keep_ms
    batch[#batch + 1] = job_id
  else
    redis.call('ZADD', q.set[state], now_ms + keep_ms, job_id)
  end
  if why then
    emit(q.events, q.maxlen, state, job_id, 'why', why)
  else
    emit(q.events, q.maxlen, state, job_id)
  end
end

-- An ended job (failed or cancelled) starts over (an operator's retry): it leaves its ended
-- set, its run fields are cleared and its attempts reset; the errors of its earlier runs are
-- kept: 'err' is appended to the history list 'eh', never lost. A job with a unique lock
-- ('uk') takes the lock back when no other job guards the key. The caller places it.
local function job_restart(q, job_key, job_id, state)
  redis.call('ZREM', q.set[state], job_id)
  redis.call('ZREM', recorded_key(q.base, q.set[state]), job_id)  -- includes/mirror
  local f = redis.call('HMGET', job_key, 'err', 'eh', 'uk')
  if f[1] and f[1] ~= '[]' then
    if f[2] and f[2] ~= '[]' then
      redis.call('HSET', job_key, 'eh', string.sub(f[2], 1, -2) .. ',' .. string.sub(f[1], 2))
    else
      redis.call('HSET', job_key, 'eh', f[1])
    end
  end
  if f[3] then
    local holder = unique_guard(f[3], q.job)
    if not holder or holder == job_id then redis.call('SET', f[3], job_id) end
  end
  redis.call('HDEL', job_key, 'f', 'why', 'cx', 'r', 'err', 'rec', 'run', 'wk', 'pg')
end

-- A restarted job goes to the back of its priority's line (event waiting, why = retried).
local function job_restart_waiting(q, job_key, job_id)
  local score = next_wait_score(q.meta, redis.call('HGET', job_key, 'p') or 0)
  redis.call('HSET', job_key, 's', 'waiting', 'a', 0, 'ws', score)
  redis.call('ZADD', q.wait, score, job_id)
  emit(q.events, q.maxlen, 'waiting', job_id, 'why', 'retried')
end
