--[[
  cancel_many: cancel many jobs of one queue at once (the admin's bulk cancel); per job the
  same transition as cancel.lua: waiting/scheduled -> cancelled, active -> cancel requested.
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] cancelled ZSET  KEYS[4] events STREAM
  ARGV[1] job key prefix: ARGV[1] .. job_id is the job HASH (same hash tag as KEYS)
  ARGV[2] events maxlen  ARGV[3] keep ms (cancelled jobs are kept as failed ones)  ARGV[4..] job ids
  Returns: a list, one code per id: 1 cancelled | 2 cancel requested (job is running)
           | 0 already finished (no-op; a replay finds the job cancelled) | -1 JOB_NOT_FOUND
  Events:  "cancelled" per cancelled job | "cancel_requested" (first request only)
]]
--@include now
--@include emit
local rcall = redis.call
local wait_key, scheduled_key, cancelled_key, events_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local job_prefix = ARGV[1]
local maxlen = tonumber(ARGV[2])
local keep_ms = tonumber(ARGV[3])
local now_ms = server_now_ms()
local out = {}
for i = 4, #ARGV do
  local job_id = ARGV[i]
  local job_key = job_prefix .. job_id
  local state = rcall('HGET', job_key, 's')
  if not state then
    out[#out + 1] = -1
  elseif state == 'waiting' or state == 'scheduled' or state == 'waiting_children' then
    rcall('ZREM', wait_key, job_id)
    rcall('ZREM', scheduled_key, job_id)
    rcall('HSET', job_key, 's', 'cancelled', 'f', now_ms)
    rcall('ZADD', cancelled_key, now_ms + keep_ms, job_id)
    emit(events_key, maxlen, 'cancelled', job_id)
    out[#out + 1] = 1
  elseif state == 'active' then
    if rcall('HGET', job_key, 'cx') ~= '1' then
      rcall('HSET', job_key, 'cx', '1')
      emit(events_key, maxlen, 'cancel_requested', job_id)
    end
    out[#out + 1] = 2
  else
    out[#out + 1] = 0
  end
end
return out
