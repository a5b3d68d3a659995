-- The retry transition (an operator's retry), for retry.lua: one rule for every entry point.
--@include flow
--@include wake

-- Retry job_id of queue q (includes/queue.lua): a failed or cancelled job starts over at the
-- back of its priority's line (includes/job_state: attempts reset, earlier errors kept in 'eh',
-- its unique key taken back). call = { ids = { [id] = true } of this call, done = {} }.
-- Flows (docs/flows.md#retrying):
--   * a parent that ended while it waited for its children (pend > 0: failed through a child,
--     or cancelled) is re-opened (back to waiting_children, its children started over) only
--     when every child that failed it is retried in the same call; else it is skipped (3);
--   * a failed child whose parent failed through it re-opens that parent (and so on up).
-- Returns 1 retried (also for a job this call already started over through its flow) | 0 not
-- failed or cancelled (a replay finds it waiting) | -1 unknown job | 2 skipped: another job
-- guards its unique key | 3 skipped: a flow parent that failed through a child that is not
-- retried with it (retry that child: it re-opens the parent) | 4 skipped: a job of a flow
-- over several slots of a Redis Cluster ('xs') whose retry would re-open jobs on other slots:
-- a parent that ended while waiting for its children, or a child that may have failed its
-- parent (default policy, not cancelled by its parent's end).
local function job_retry(q, job_id, now_ms, call)
  local job_key = q.job .. job_id
  if call.done[job_key] then return 1 end
  local f = redis.call('HMGET', job_key, 's', 'uk', 'pend', 'pb', 'par', 'xs', 'fp', 'why')
  local state = f[1]
  if not state then return -1 end
  if state ~= 'failed' and state ~= 'cancelled' then return 0 end
  local cross_parent = f[6] == '1' and f[4] and f[4] ~= q.base
  if f[6] == '1' and ((tonumber(f[3]) or 0) > 0 or (cross_parent and (f[7] or '') == '' and f[8] ~= 'parent_ended')) then
    return 4
  end
  if f[2] then
    local holder = unique_guard(f[2], q.job)
    if holder and holder ~= job_id then return 2 end
  end
  if (tonumber(f[3]) or 0) > 0 then
    for _, kid in ipairs(flow_failing_children(job_key)) do
      if kid[1] ~= q.base or not call.ids[kid[2]] then return 3 end
    end
    flow_reopen(q, job_key, job_id, state, now_ms, call.done, true)
    return 1
  end
  job_restart(q, job_key, job_id, state)
  job_restart_waiting(q, job_key, job_id)
  call.done[job_key] = true
  call.woke = true
  if f[4] and f[5] and f[5] ~= '' and not cross_parent then
    local pq = queue_keys(f[4], q.maxlen)
    local pkey = pq.job .. f[5]
    if not call.done[pkey] and flow_failed_through(pkey, job_key, job_id) then
      flow_reopen(pq, pkey, f[5], 'failed', now_ms, call.done, true)
    end
  end
  return 1
end
