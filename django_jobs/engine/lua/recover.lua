--[[
  recover: return jobs whose lease expired (their worker died or stalled) to waiting,
  at their original place in line; after max_recoveries, fail them as "worker_lost".
  A job whose cancel was requested while it ran is cancelled instead of run again.
  Idempotent: any process may run it at any time.
  KEYS[1] active ZSET  KEYS[2] wait ZSET  KEYS[3] failed ZSET  KEYS[4] meta HASH
  KEYS[5] events STREAM  KEYS[6] marker LIST  KEYS[7] cancelled ZSET
  KEYS[8] scheduled ZSET (a freed per-key slot promotes a parked job: includes/key_slot_freed)
  ARGV[1] job key prefix  ARGV[2] events maxlen  ARGV[3] max_recoveries  ARGV[4] limit
  ARGV[5] keep failed ms (also for cancelled)  ARGV[6] now_ms override for tests (0 = Redis time)
  Returns: { recovered_count, failed_count, cancelled_count, { job_id, what, correlation_id, ... } }
           with what 'stalled' (back to waiting) | 'failed' (worker_lost) | 'cancelled', per job handled
  Events:  "stalled" per job back to waiting, "failed" (why=worker_lost) per job past
           max_recoveries, "cancelled" per cancel-requested job
  Flows:   an ended flow job updates its parent and children (includes/flow.lua, other queues' keys)
]]
--@include now
--@include wait_score
--@include requeue
--@include emit
--@include wake
--@include append_json
--@include flow
--@include slot_freed
--@include unique_release
--@include key_slot_freed
local rcall = redis.call
local active_key, wait_key, failed_key, meta_key, events_key, marker_key, cancelled_key, scheduled_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local job_prefix = ARGV[1]
local maxlen = tonumber(ARGV[2])
local max_recoveries = tonumber(ARGV[3])
local keep_ms = tonumber(ARGV[5])
local now_ms = tonumber(ARGV[6])
if now_ms == 0 then now_ms = server_now_ms() end
-- A lease is valid until its deadline; it has expired once the deadline is in the past.
local expired = rcall('ZRANGEBYSCORE', active_key, '-inf', string.format('(%d', now_ms), 'LIMIT', 0, tonumber(ARGV[4]))
local recovered, failed, cancelled = 0, 0, 0
local outcomes = {} -- job_id, what ('stalled' | 'failed' | 'cancelled'), correlation_id, ...
for i = 1, #expired do
  local job_id = expired[i]
  local job_key = job_prefix .. job_id
  rcall('ZREM', active_key, job_id)
  local fields = rcall('HMGET', job_key, 's', 'ws', 'p', 'cx', 'cid', 'lk')
  if fields[1] == 'active' then
    local recoveries = rcall('HINCRBY', job_key, 'rec', 1)
    if fields[6] then key_slot_freed(fields[6], job_id, job_prefix, wait_key, scheduled_key, events_key, maxlen, marker_key) end
    rcall('HDEL', job_key, 'tok', 'w')
    if fields[4] == '1' then
      -- Its worker was asked to stop it and then vanished: honour the cancel, do not rerun.
      rcall('HSET', job_key, 's', 'cancelled', 'f', now_ms)
      rcall('ZADD', cancelled_key, now_ms + keep_ms, job_id)
      emit(events_key, maxlen, 'cancelled', job_id)
      unique_release(job_id, rcall('HGET', job_key, 'uk'))
      cancelled = cancelled + 1
      outcomes[#outcomes + 1] = job_id
      outcomes[#outcomes + 1] = 'cancelled'
      outcomes[#outcomes + 1] = fields[5] or ''
    elseif recoveries > max_recoveries then
      append_json(job_key, 'err', cjson.encode({
        exception_class_path = 'django_jobs.exceptions.LeaseLost',
        traceback = 'The job\'s worker stopped renewing its lease ' .. recoveries .. ' times (worker_lost).',
      }))
      rcall('HSET', job_key, 's', 'failed', 'f', now_ms, 'why', 'worker_lost')
      rcall('ZADD', failed_key, now_ms + keep_ms, job_id)
      emit(events_key, maxlen, 'failed', job_id, 'why', 'worker_lost')
      unique_release(job_id, rcall('HGET', job_key, 'uk'))
      failed = failed + 1
      outcomes[#outcomes + 1] = job_id
      outcomes[#outcomes + 1] = 'failed'
      outcomes[#outcomes + 1] = fields[5] or ''
    else
      requeue_front(job_key, job_id, wait_key, meta_key, fields[2], fields[3])
      emit(events_key, maxlen, 'stalled', job_id)
      recovered = recovered + 1
      outcomes[#outcomes + 1] = job_id
      outcomes[#outcomes + 1] = 'stalled'
      outcomes[#outcomes + 1] = fields[5] or ''
    end
    flow_done(job_key, job_id, now_ms, maxlen)
  end
end
if recovered > 0 then wake(marker_key) end
if #expired > 0 then slot_freed(meta_key, marker_key) end
return { recovered, failed, cancelled, outcomes }
