--[[
  cancel: cancel a waiting or scheduled job; ask a running job to stop.
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] cancelled ZSET  KEYS[4] events STREAM
  KEYS[5] job HASH
  ARGV[1] job_id  ARGV[2] events maxlen  ARGV[3] keep ms
  Returns: 1 cancelled | 2 cancel requested (job is running) | 0 already finished (no-op)
           | -1 JOB_NOT_FOUND
  Events:  "cancelled" | "cancel_requested" (on the first request only; asking again is a no-op)
  Flows:   cancelling a parent cancels its unfinished children; a cancelled child applies its
           failure policy to its parent (includes/flow.lua, other queues' keys)
]]
--@include now
--@include emit
--@include flow
--@include unique_release
local rcall = redis.call
local wait_key, scheduled_key, cancelled_key, events_key, job_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_id = ARGV[1]
local maxlen = tonumber(ARGV[2])
local state = rcall('HGET', job_key, 's')
if not state then return -1 end
if state == 'waiting' or state == 'scheduled' or state == 'waiting_children' then
  local now_ms = server_now_ms()
  rcall('ZREM', wait_key, job_id)
  rcall('ZREM', scheduled_key, job_id)
  rcall('HSET', job_key, 's', 'cancelled', 'f', now_ms)
  rcall('ZADD', cancelled_key, now_ms + tonumber(ARGV[3]), job_id)
  emit(events_key, maxlen, 'cancelled', job_id)
  flow_done(job_key, job_id, now_ms, maxlen)
  unique_release(job_id, rcall('HGET', job_key, 'uk'))
  return 1
elseif state == 'active' then
  if rcall('HGET', job_key, 'cx') ~= '1' then
    rcall('HSET', job_key, 'cx', '1')
    emit(events_key, maxlen, 'cancel_requested', job_id)
  end
  return 2
end
return 0
