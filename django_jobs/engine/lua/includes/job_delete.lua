-- The delete transition, for delete.lua.
--@include flow

local DELETE_KEEPS = { waiting = true, scheduled = true, waiting_children = true }

-- Delete job_id of queue q (includes/queue.lua), hash and all, unless it runs: it leaves its
-- state set (and its limit key's parked list) and its unique key is released. A flow parent
-- that waits for its children cancels its unfinished descendants first (includes/flow.lua); an
-- unfinished child of a flow is kept (its parent waits for it: cancel it, which applies its
-- policy). clock: a table whose ms is the server time, read on first need.
-- Returns 1 deleted | 0 running or an unfinished flow child | -1 unknown job.
local function job_delete(q, job_id, clock)
  local job_key = q.job .. job_id
  local f = redis.call('HMGET', job_key, 's', 'pb', 'uk', 'lk')
  local state = f[1]
  if not state then return -1 end
  if state == 'active' or (f[2] and DELETE_KEEPS[state]) then return 0 end
  if state == 'waiting_children' then
    clock.ms = clock.ms or server_now_ms()
    flow_cancel_children(job_key, job_id, clock.ms, q.maxlen)
  end
  job_unpend(q, job_id, state, f[4])
  unique_release(job_id, f[3])
  redis.call('DEL', job_key)
  emit(q.events, q.maxlen, 'deleted', job_id)
  return 1
end
