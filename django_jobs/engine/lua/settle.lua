--[[
  settle: apply a batch of outcomes of active jobs (complete, retry, fail, cancelled).
  Fenced: an outcome applies only while the job is active with the same lease token.
  Replay-safe: the same outcome sent twice (a resent script after a dropped reply) finds
  the job already in the outcome's state with the same token and reports success again.
  KEYS[1] active ZSET  KEYS[2] wait ZSET  KEYS[3] scheduled ZSET  KEYS[4] completed ZSET
  KEYS[5] failed ZSET  KEYS[6] cancelled ZSET  KEYS[7] meta HASH  KEYS[8] events STREAM
  KEYS[9] marker LIST
  ARGV[1] job key prefix  ARGV[2] events maxlen
  ARGV[3] keep completed ms  ARGV[4] keep completed count
  ARGV[5] keep failed ms     ARGV[6] keep failed count
  ARGV[7..] groups of 6: job_id, token, kind ("c" complete | "r" retry | "f" fail |
            "x" cancelled | "l" rate limited: back to scheduled after delay_ms, the attempt
            not counted; value "queue" / "key" also holds the queue / the job's limit key back, see includes/rate_limited),
            value (result JSON for "c", error JSON otherwise),
            delay_ms (retry; 0 = straight back to waiting), keep_ms (per-job retention; 0 = queue default, < 0 = delete at finish)
  A retry of a job whose cancel was requested while it ran cancels it instead.
  Returns: a list, one code per outcome: 1 applied (or already applied: replay)
           | -1 JOB_NOT_FOUND | -3 NOT_OWNER | -4 BAD_REQUEST (unknown kind; nothing written)
  Events:  "completed" | "retrying" | "failed" | "cancelled" | "rate_limited" per applied outcome
           (none on replay)
  Flows:   an ended flow job updates its parent and children (includes/flow.lua, other queues' keys)
]]
--@include now
--@include wait_score
--@include emit
--@include wake
--@include append_json
--@include trim
--@include flow
--@include slot_freed
--@include rate_limited
--@include unique_release
--@include key_slot_freed
local rcall = redis.call
local active_key, wait_key, scheduled_key, completed_key, failed_key, cancelled_key, meta_key, events_key, marker_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local job_prefix = ARGV[1]
local maxlen = tonumber(ARGV[2])
local keep_completed_ms, keep_completed_count = tonumber(ARGV[3]), tonumber(ARGV[4])
local keep_failed_ms, keep_failed_count = tonumber(ARGV[5]), tonumber(ARGV[6])
local now_ms = server_now_ms()
local results = {}
local touched_completed, touched_failed, woke = false, false, false

local SETTLED_STATE = { c = 'completed', f = 'failed', x = 'cancelled' }
-- Leaving active and entering completed are batched into one ZREM and one ZADD per call.
local left_active, completed_args = {}, {}

for i = 7, #ARGV, 6 do
  local job_id, token, kind, value = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local delay_ms, keep_ms = tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5])
  local job_key = job_prefix .. job_id
  local fields = rcall('HMGET', job_key, 's', 'tok', 'p', 'cx', 'uk', 'lk')
  local state, current_token = fields[1], fields[2]
  if kind ~= 'r' and kind ~= 'l' and not SETTLED_STATE[kind] then
    results[#results + 1] = -4
  elseif not state then
    results[#results + 1] = -1
  elseif current_token ~= token then
    results[#results + 1] = -3
  elseif state ~= 'active' then
    -- Same token but no longer active: this exact outcome was already applied (replay).
    local expected = SETTLED_STATE[kind]
    if kind == 'r' or kind == 'l' then
      -- A retry leaves the job waiting or scheduled (or cancelled, when a cancel was requested).
      if state == 'waiting' or state == 'scheduled' or state == 'cancelled' then
        results[#results + 1] = 1
      else
        results[#results + 1] = -3
      end
    elseif state == expected then
      results[#results + 1] = 1
    else
      results[#results + 1] = -3
    end
  else
    left_active[#left_active + 1] = job_id
    if kind == 'c' then
      -- keep_ms < 0: keep_result=0, delete at finish (like KEEP_COMPLETED AGE 0); 0: the queue's.
      if keep_ms == 0 then keep_ms = keep_completed_ms elseif keep_ms < 0 then keep_ms = 0 end
      rcall('HSET', job_key, 's', 'completed', 'r', value, 'f', now_ms)
      completed_args[#completed_args + 1] = now_ms + keep_ms
      completed_args[#completed_args + 1] = job_id
      emit(events_key, maxlen, 'completed', job_id)
      touched_completed = true
    elseif (kind == 'r' or kind == 'l') and fields[4] == '1' then
      -- Asked to stop while it ran: do not run it again.
      if keep_ms <= 0 then keep_ms = keep_failed_ms end
      if kind == 'r' then append_json(job_key, 'err', value) end
      rcall('ZADD', cancelled_key, now_ms + keep_ms, job_id)
      rcall('HSET', job_key, 's', 'cancelled', 'f', now_ms)
      emit(events_key, maxlen, 'cancelled', job_id)
      touched_failed = true
    elseif kind == 'l' then
      rate_limited(job_key, job_id, scheduled_key, meta_key, now_ms, delay_ms, value, fields[6])
      emit(events_key, maxlen, 'rate_limited', job_id, 'delay', delay_ms)
      woke = true
    elseif kind == 'r' then
      append_json(job_key, 'err', value)
      if delay_ms > 0 then
        rcall('ZADD', scheduled_key, now_ms + delay_ms, job_id)
        rcall('HSET', job_key, 's', 'scheduled', 'run', now_ms + delay_ms)
      else
        local score = next_wait_score(meta_key, fields[3] or 0)
        rcall('ZADD', wait_key, score, job_id)
        rcall('HSET', job_key, 's', 'waiting', 'ws', score)
      end
      emit(events_key, maxlen, 'retrying', job_id, 'delay', delay_ms)
      woke = true
    else
      if keep_ms <= 0 then keep_ms = keep_failed_ms end
      local new_state = SETTLED_STATE[kind]
      if kind == 'f' then
        append_json(job_key, 'err', value)
        rcall('ZADD', failed_key, now_ms + keep_ms, job_id)
      else
        if value ~= '' then append_json(job_key, 'err', value) end
        rcall('ZADD', cancelled_key, now_ms + keep_ms, job_id)
      end
      rcall('HSET', job_key, 's', new_state, 'f', now_ms)
      emit(events_key, maxlen, new_state, job_id)
      touched_failed = true
    end
    -- It finished (complete, fail, cancel, or a retry turned into a cancel): its unique key is free.
    if fields[5] and (SETTLED_STATE[kind] or fields[4] == '1') then unique_release(job_id, fields[5]) end
    if fields[6] then key_slot_freed(fields[6], job_id, job_prefix, wait_key, scheduled_key, events_key, maxlen, marker_key) end
    flow_done(job_key, job_id, now_ms, maxlen)
    results[#results + 1] = 1
  end
end

-- unpack() takes a few thousand values at most: send long lists in slices.
local SLICE = 2000
for first = 1, #left_active, SLICE do
  rcall('ZREM', active_key, unpack(left_active, first, math.min(first + SLICE - 1, #left_active)))
end
for first = 1, #completed_args, SLICE do
  rcall('ZADD', completed_key, unpack(completed_args, first, math.min(first + SLICE - 1, #completed_args)))
end
if woke then wake(marker_key) end
if #left_active > 0 then slot_freed(meta_key, marker_key) end
if touched_completed then trim_finished(completed_key, job_prefix, now_ms, keep_completed_count) end
if touched_failed then
  trim_finished(failed_key, job_prefix, now_ms, keep_failed_count)
  trim_finished(cancelled_key, job_prefix, now_ms, keep_failed_count)
end
return results
