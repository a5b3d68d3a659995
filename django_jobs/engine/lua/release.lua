--[[
  release: put a worker's unfinished active jobs back to waiting at once (graceful shutdown),
  at their original place in line. Fenced by token; the interrupted run is not an attempt.
  A job whose cancel was requested while it ran is cancelled instead of run again.
  KEYS[1] active ZSET  KEYS[2] wait ZSET  KEYS[3] meta HASH  KEYS[4] events STREAM
  KEYS[5] marker LIST  KEYS[6] cancelled ZSET
  KEYS[7] scheduled ZSET (a freed per-key slot promotes a parked job: includes/key_slot_freed)
  ARGV[1] job key prefix  ARGV[2] events maxlen  ARGV[3] keep cancelled ms
  ARGV[4..] pairs of job_id, token
  Returns: number of jobs released (back to waiting or cancelled); a replay releases 0
  Events:  "released" per job back to waiting, "cancelled" per cancel-requested job
  Flows:   a cancelled flow job updates its parent and children (includes/flow.lua, other queues' keys)
]]
--@include now
--@include wait_score
--@include requeue
--@include emit
--@include wake
--@include flow
--@include unique_release
--@include key_slot_freed
local rcall = redis.call
local active_key, wait_key, meta_key, events_key, marker_key, cancelled_key, scheduled_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job_prefix = ARGV[1]
local maxlen = tonumber(ARGV[2])
local keep_ms = tonumber(ARGV[3])
local released, requeued = 0, 0
local now_ms
for i = 4, #ARGV, 2 do
  local job_id, token = ARGV[i], ARGV[i + 1]
  local job_key = job_prefix .. job_id
  local fields = rcall('HMGET', job_key, 's', 'tok', 'ws', 'p', 'cx', 'lk')
  if fields[1] == 'active' and fields[2] == token then
    rcall('ZREM', active_key, job_id)
    rcall('HDEL', job_key, 'tok', 'w')
    if fields[6] then key_slot_freed(fields[6], job_id, job_prefix, wait_key, scheduled_key, events_key, maxlen, marker_key) end
    if fields[5] == '1' then
      now_ms = now_ms or server_now_ms()
      rcall('HSET', job_key, 's', 'cancelled', 'f', now_ms)
      rcall('ZADD', cancelled_key, now_ms + keep_ms, job_id)
      emit(events_key, maxlen, 'cancelled', job_id)
      unique_release(job_id, rcall('HGET', job_key, 'uk'))
    else
      requeue_front(job_key, job_id, wait_key, meta_key, fields[3], fields[4])
      emit(events_key, maxlen, 'released', job_id)
      requeued = requeued + 1
    end
    flow_done(job_key, job_id, now_ms or 0, maxlen)
    released = released + 1
  end
end
if requeued > 0 then wake(marker_key) end
return released
