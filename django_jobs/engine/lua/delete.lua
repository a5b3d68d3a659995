--[[
  delete: delete jobs that are not running (the admin's delete action), hash and all.
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] completed ZSET  KEYS[4] failed ZSET
  KEYS[5] cancelled ZSET  KEYS[6] events STREAM  KEYS[7] waiting_children ZSET
  ARGV[1] job key prefix: ARGV[1] .. job_id is the job HASH (same hash tag as KEYS)
  ARGV[2] events maxlen  ARGV[3..] job ids
  Flows: deleting a flow's root parent that waits for its children cancels its unfinished
  descendants first (includes/flow.lua; they may be on other queues). An unfinished child
  of a flow is not deleted (its parent waits for it): cancel it, which applies its policy.
  Returns: a list, one code per id: 1 deleted | 0 not deleted: running, or an unfinished
           child of a flow (cancel it first) | -1 JOB_NOT_FOUND (also what a replay finds)
  Events:  "deleted" per deleted job (the mirror drops its row); "cancelled" per descendant
]]
--@include now
--@include emit
--@include flow
local rcall = redis.call
local wait_key, scheduled_key, completed_key, failed_key, cancelled_key, events_key, waiting_children_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local job_prefix = ARGV[1]
local maxlen = tonumber(ARGV[2])
local sets = {waiting = wait_key, waiting_children = waiting_children_key, scheduled = scheduled_key,
  completed = completed_key, failed = failed_key, cancelled = cancelled_key}
local UNFINISHED = {waiting = true, scheduled = true, waiting_children = true}
local now_ms = nil
local out = {}
for i = 3, #ARGV do
  local job_id = ARGV[i]
  local job_key = job_prefix .. job_id
  local f = rcall('HMGET', job_key, 's', 'pb')
  local state = f[1]
  if not state then
    out[#out + 1] = -1
  elseif state == 'active' or (f[2] and UNFINISHED[state]) then
    out[#out + 1] = 0
  else
    if state == 'waiting_children' then
      now_ms = now_ms or server_now_ms()
      flow_cancel_children(job_key, now_ms, maxlen)
    end
    local set_key = sets[state]
    if set_key then rcall('ZREM', set_key, job_id) end
    rcall('DEL', job_key)
    emit(events_key, maxlen, 'deleted', job_id)
    out[#out + 1] = 1
  end
end
return out
