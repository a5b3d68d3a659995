-- The finish transition: the outcome of a run, for settle.lua (complete | retry | fail |
-- cancelled | rate limited), and the end of a job that leaves active for release.lua and
-- recover.lua. The unique key, per-key slot and flow bookkeeping are all here.
--@include now
--@include flow
--@include requeue
--@include wake
--@include append_json
--@include rate_limited
--@include key_slot_freed
--@include mirror

-- A job left active (its ZREM from active is the caller's: settle batches it): free its
-- per-key slot (lk: its limit key base, includes/key_slot_freed).
local function job_left_active(q, job_id, lk)
  if lk then key_slot_freed(lk, job_id, q.job, q.wait, q.scheduled, q.events, q.maxlen, q.marker) end
end

-- An active job ends (state completed | failed | cancelled, why or nil): written, then its
-- unique key is released and its flow learns it ended. uk: its lock ('uk') as read, or nil.
-- batch, r: as job_ended (includes/job_state).
local function job_finish(q, job_key, job_id, state, now_ms, keep_ms, why, uk, batch, r)
  job_ended(q, job_key, job_id, state, now_ms, keep_ms, why, batch, r)
  unique_release(job_id, uk)
  flow_done(job_key, job_id, now_ms, q.maxlen)
end

local SETTLED_STATE = { c = 'completed', f = 'failed', x = 'cancelled' }

-- Apply one outcome to job_id of queue q, fenced by token (settle.lua's header has the kinds).
-- acc collects for the caller: left (ids that left active: one ZREM), completed (score, id
-- pairs: one ZADD), gone (job keys to DEL: completed jobs kept for no time, see job_ended),
-- keep_c / keep_f (default keep ms), and sets touched_completed,
-- touched_failed, woke. clock: a table whose ms is the server time, read on first need (a
-- completion kept for no time needs none). Returns 1 applied (or already applied: replay) |
-- -1 unknown job | -3 not the owner | -4 unknown kind.
local function job_settle(q, acc, job_id, token, kind, value, delay_ms, keep_ms, clock)
  local job_key = q.job .. job_id
  local fields = redis.call('HMGET', job_key, 's', 'tok', 'p', 'cx', 'uk', 'lk')
  local state, current_token = fields[1], fields[2]
  if kind ~= 'r' and kind ~= 'l' and not SETTLED_STATE[kind] then return -4 end
  if not state then return -1 end
  if current_token ~= token then return -3 end
  if state ~= 'active' then
    -- Same token but no longer active: this exact outcome was already applied (replay).
    if kind == 'r' or kind == 'l' then
      -- A retry leaves the job waiting or scheduled (or cancelled, when a cancel was requested).
      if state == 'waiting' or state == 'scheduled' or state == 'cancelled' then return 1 end
      return -3
    end
    if state == SETTLED_STATE[kind] then return 1 end
    return -3
  end
  acc.left[#acc.left + 1] = job_id
  local gone
  if kind == 'c' then
    -- keep_ms < 0: keep_result=0, delete at finish (like KEEP_COMPLETED AGE 0); 0: the queue's.
    if keep_ms == 0 then keep_ms = acc.keep_c elseif keep_ms < 0 then keep_ms = 0 end
    -- Kept for no time (fire-and-forget): no HSET, no ZADD, one DEL per batch (acc.gone),
    -- unless a flow may read the hash later in this call, or a mirror holds the queue (it reads
    -- the hash before retention may delete it: includes/mirror.lua).
    gone = keep_ms == 0 and not flows_on(q.base) and not mirror_cap(q.base) and acc.gone or nil
  end
  -- Every outcome but a completion kept for no time writes a time: the clock is read then.
  local now_ms
  if not gone then
    clock.ms = clock.ms or server_now_ms()
    now_ms = clock.ms
  end
  if kind == 'c' then
    job_ended(q, job_key, job_id, 'completed', now_ms, keep_ms, nil, acc.completed, value, gone)
    acc.touched_completed = true
  elseif (kind == 'r' or kind == 'l') and fields[4] == '1' then
    -- Asked to stop while it ran: do not run it again.
    if keep_ms <= 0 then keep_ms = acc.keep_f end
    if kind == 'r' then append_json(job_key, 'err', value) end
    job_ended(q, job_key, job_id, 'cancelled', now_ms, keep_ms)
    acc.touched_failed = true
  elseif kind == 'l' then
    rate_limited(job_key, job_id, q.scheduled, q.meta, now_ms, delay_ms, value, fields[6])
    emit(q.events, q.maxlen, 'rate_limited', job_id, 'delay', delay_ms)
    acc.woke = true
  elseif kind == 'r' then
    append_json(job_key, 'err', value)
    if delay_ms > 0 then
      redis.call('ZADD', q.scheduled, now_ms + delay_ms, job_id)
      redis.call('HSET', job_key, 's', 'scheduled', 'run', now_ms + delay_ms)
    else
      local score = next_wait_score(q.meta, fields[3] or 0)
      redis.call('ZADD', q.wait, score, job_id)
      redis.call('HSET', job_key, 's', 'waiting', 'ws', score)
    end
    emit(q.events, q.maxlen, 'retrying', job_id, 'delay', delay_ms)
    acc.woke = true
  else
    if keep_ms <= 0 then keep_ms = acc.keep_f end
    if kind == 'f' or value ~= '' then append_json(job_key, 'err', value) end
    job_ended(q, job_key, job_id, SETTLED_STATE[kind], now_ms, keep_ms)
    acc.touched_failed = true
  end
  job_left_active(q, job_id, fields[6])
  -- It ended (complete, fail, cancel, or a retry turned into a cancel): unique key and flow.
  if SETTLED_STATE[kind] or fields[4] == '1' then
    unique_release(job_id, fields[5])
    flow_done(job_key, job_id, now_ms, q.maxlen)
  end
  return 1
end

-- An active job's run was interrupted (release: its worker stops; recover: its lease expired):
-- it leaves active and frees its per-key slot, and then a cancel-requested job is cancelled
-- (kept keep_ms), a job given fail_err (an error JSON) fails with why, any other goes back to
-- wait at its old place in line (the run not counted) with event requeued_event.
-- f = HMGET job 's' 'ws' 'p' 'cx' 'uk' 'lk'. clock: a table whose ms is the server time, read
-- on first need. Returns 'cancelled' | 'failed' | 'requeued'.
local function job_interrupted(q, job_key, job_id, f, clock, keep_ms, requeued_event, fail_err, why)
  redis.call('ZREM', q.active, job_id)
  job_left_active(q, job_id, f[6])
  redis.call('HDEL', job_key, 'tok', 'w')
  if f[4] == '1' then
    -- Its worker was asked to stop it: honour the cancel, do not rerun.
    clock.ms = clock.ms or server_now_ms()
    job_finish(q, job_key, job_id, 'cancelled', clock.ms, keep_ms, nil, f[5])
    return 'cancelled'
  elseif fail_err then
    clock.ms = clock.ms or server_now_ms()
    append_json(job_key, 'err', fail_err)
    job_finish(q, job_key, job_id, 'failed', clock.ms, keep_ms, why, f[5])
    return 'failed'
  end
  requeue_front(job_key, job_id, q.wait, q.meta, f[2], f[3])
  emit(q.events, q.maxlen, requeued_event, job_id)
  return 'requeued'
end
