-- The cancel transition, for cancel.lua and cancel_many.lua (and flows' parent_ended cancels,
-- includes/flow.lua, share its steps).
--@include flow

local CANCEL_FROM = { waiting = true, scheduled = true, waiting_children = true }

-- Cancel job_id of queue q (includes/queue.lua): a waiting, scheduled or waiting_children job
-- is cancelled at once, kept keep_ms: it leaves its set (and its limit key's parked list), its
-- unique key is released, and its flow learns it ended (includes/flow.lua: its parent applies
-- its failure policy, its unfinished children are cancelled). A running job gets a cancel
-- request ('cx', event cancel_requested on the first request only); its worker ends it.
-- Returns 1 cancelled | 2 cancel requested | 0 already finished | -1 unknown job.
local function job_cancel(q, job_id, now_ms, keep_ms)
  local job_key = q.job .. job_id
  local f = redis.call('HMGET', job_key, 's', 'cx', 'uk', 'lk')
  local state = f[1]
  if not state then return -1 end
  if CANCEL_FROM[state] then
    job_unpend(q, job_id, state, f[4])
    job_ended(q, job_key, job_id, 'cancelled', now_ms, keep_ms)
    unique_release(job_id, f[3])
    flow_done(job_key, job_id, now_ms, q.maxlen)
    return 1
  elseif state == 'active' then
    if f[2] ~= '1' then
      redis.call('HSET', job_key, 'cx', '1')
      emit(q.events, q.maxlen, 'cancel_requested', job_id)
    end
    return 2
  end
  return 0
end
