--[[
  enqueue_guarded: add jobs that carry a unique key and/or a limit key (docs/flow-control.md).
  Unique: unless a job with the same key is still guarded; in replace mode (debounce) update
  the guarded job instead. Limit key: written into the job ('lk' 'lc' 'lr' 'lp'), enforced by
  fetch (includes/key_limits).
  A job is guarded while it is waiting or scheduled (until = 's'), also while active
  (until = 'f'), or, with a window, as long as the lock lives (its PX), whatever its state.
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] meta HASH  KEYS[4] events STREAM
  KEYS[5] marker LIST
  ARGV[1] job key prefix ("djj:{queue}:job:", same hash tag as KEYS)
  ARGV[2] events maxlen
  ARGV[3] unique lock prefix ("djj:{queue}:unique:", same hash tag): ARGV[3] .. key is the
          lock STRING holding the id of the job that owns the key
  ARGV[4] limit prefix ("djj:{queue}:lim:", same hash tag): ARGV[4] .. key .. ':' is the base
          name of a limit key's structures (includes/key_limits)
  ARGV[5..] groups of 15: job_id, data_json, priority, run_at_ms (0 = none), delay_ms,
            correlation_id, parent_id, unique key ('' = none), mode ('k' keep | 'r' replace),
            until ('s' start | 'f' finish), window_ms (0 = none), limit key ('' = none),
            limit concurrency (0 = none), limit rate count (0 = none), limit rate period ms
  Returns: a flat list, three entries per job: code, job id, enqueued ms, with code
           1 created (waiting), 2 created (scheduled), 0 a job with this id already exists
           (nothing written), 3 deduplicated (id = the guarded job; nothing written), 4 replaced
           (id = the guarded job, whose arguments and run time are now this enqueue's); enqueued
           ms is the 'e' the job named by id holds (this call's server time for a created job;
           the first call's for a replay; the guarded job's own for 3 and 4; 0 if it has none)
  Events:  "waiting" or "scheduled" per created job; "deduplicated" (j = the guarded job,
           dup = the refused id) or "replaced" (j = the guarded job) otherwise
  Body: includes/job_store.lua (a created job), the one place that transition is written.
]]
--@include now
--@include wake
--@include job_store
--@include unique_guard
local rcall = redis.call
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local lock_prefix, limit_prefix = ARGV[3], ARGV[4]
local now_ms = server_now_ms()
local out = {}
local woke = false

for i = 5, #ARGV, 15 do
  local job_id, data = ARGV[i], ARGV[i + 1]
  local lock_key = ARGV[i + 7] ~= '' and (lock_prefix .. ARGV[i + 7]) or nil
  local mode = ARGV[i + 8]
  local due = job_due(now_ms, ARGV[i + 3], ARGV[i + 4])
  local holder, state, windowed
  if lock_key then holder, state, windowed = unique_guard(lock_key, q.job) end
  if holder == job_id then
    -- A replay of the call that created this job.
    out[#out + 1] = (state == 'scheduled') and 2 or 1
    out[#out + 1] = job_id
    out[#out + 1] = stored_enqueued_ms(q.job .. job_id)
  elseif holder and mode == 'r' and (state == 'waiting' or state == 'scheduled') then
    local holder_key = q.job .. holder
    rcall('HSET', holder_key, 'd', data)
    if due > now_ms then
      rcall('ZREM', q.wait, holder)
      rcall('ZADD', q.scheduled, due, holder)
      rcall('HSET', holder_key, 's', 'scheduled', 'run', due)
    elseif state == 'scheduled' then
      rcall('ZREM', q.scheduled, holder)
      local score = next_wait_score(q.meta, rcall('HGET', holder_key, 'p') or 0)
      rcall('ZADD', q.wait, score, holder)
      rcall('HSET', holder_key, 's', 'waiting', 'ws', score)
      rcall('HDEL', holder_key, 'run')
      woke = true
    end
    emit(q.events, q.maxlen, 'replaced', holder)
    out[#out + 1] = 4
    out[#out + 1] = holder
    out[#out + 1] = stored_enqueued_ms(holder_key)
  elseif holder and (mode ~= 'r' or windowed) then
    -- Kept, or (debounce with a window) the key's job of this window already ran or runs.
    emit(q.events, q.maxlen, 'deduplicated', holder, 'dup', job_id)
    out[#out + 1] = 3
    out[#out + 1] = holder
    out[#out + 1] = stored_enqueued_ms(q.job .. holder)
  else
    local j = { id = job_id, d = data, p = ARGV[i + 2], due = due, cid = ARGV[i + 5], par = ARGV[i + 6] }
    if ARGV[i + 11] ~= '' then
      j.lk, j.lc, j.lr, j.lp = limit_prefix .. ARGV[i + 11] .. ':', ARGV[i + 12], ARGV[i + 13], ARGV[i + 14]
    end
    if lock_key then j.lock, j.ug, j.window_ms = lock_key, ARGV[i + 9], tonumber(ARGV[i + 10]) end
    local code, enqueued_ms = job_store(q, j, now_ms)
    if code ~= 0 then woke = true end
    out[#out + 1] = code
    out[#out + 1] = job_id
    out[#out + 1] = enqueued_ms
  end
end
if woke then wake(q.marker) end
return out
