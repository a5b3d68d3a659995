-- The retry transition (an operator's retry), for retry.lua: one rule for every entry point.
--@include flow
--@include wake

-- Retry job_id of queue q (includes/queue.lua): a failed or cancelled job starts over at the
-- back of its priority's line (includes/job_state: attempts reset, earlier errors kept in 'eh',
-- its unique key taken back). call = { ids = { [id] = true } of this call, done = {} }.
-- Flows (docs/flows.md#retrying):
--   * a parent that ended while it waited for its children (pend > 0: failed through a child,
--     or cancelled) is re-opened (back to waiting_children, its children started over) only
--     when every child that failed it is retried in the same call (a child on another queue
--     never is: retry that child); else it is skipped (3);
--   * a failed child whose parent failed through it re-opens that parent (and so on up).
-- Which children failed a parent is read from the parent's own records ('c:<id>',
-- includes/flow.lua flow_failing_children). On a Redis Cluster a step toward a job on another
-- slot ('xs') goes through the outbox (a 'r' entry re-opens the parent, an 'o' entry
-- re-opens a child: includes/flow.lua), applied by the relay with the same functions.
-- Returns 1 retried (also for a job this call already started over through its flow) | 0 not
-- failed or cancelled (a replay finds it waiting) | -1 unknown job | 2 skipped: another job
-- guards its unique key | 3 skipped: a flow parent that failed through a child that is not
-- retried with it (retry that child: it re-opens the parent). (4, RetryCode.CROSS_SLOT, is no
-- longer returned.)
local function job_retry(q, job_id, now_ms, call)
  local job_key = q.job .. job_id
  if call.done[job_key] then return 1 end
  local f = redis.call('HMGET', job_key, 's', 'uk', 'pend', 'pb', 'par', 'xs', 'fp', 'why')
  local state = f[1]
  if not state then return -1 end
  if state ~= 'failed' and state ~= 'cancelled' then return 0 end
  if f[2] then
    local holder = unique_guard(f[2], q.job)
    if holder and holder ~= job_id then return 2 end
  end
  if (tonumber(f[3]) or 0) > 0 then
    for _, kid in ipairs(flow_failing_children(job_key, job_id)) do
      if kid[1] ~= q.base or not call.ids[kid[2]] then return 3 end
    end
    flow_reopen(q, job_key, job_id, state, now_ms, call.done, true)
    return 1
  end
  job_restart(q, job_key, job_id, state)
  job_restart_waiting(q, job_key, job_id)
  call.done[job_key] = true
  call.woke = true
  if f[4] and f[5] and f[5] ~= '' then
    if f[6] == '1' and f[4] ~= q.base then
      -- The parent is on another slot: it re-opens there if it failed through this child.
      if (f[7] or '') == '' and f[8] ~= 'parent_ended' then
        flow_outbox_put(q.base, 'r|' .. f[5] .. '|' .. job_id, { k = 'r', b = f[4], par = f[5], id = job_id }, now_ms)
      end
    else
      local pq = queue_keys(f[4], q.maxlen)
      local pkey = pq.job .. f[5]
      if not call.done[pkey] and flow_failed_through(pkey, job_key, job_id) then
        flow_reopen(pq, pkey, f[5], 'failed', now_ms, call.done, true)
      end
    end
  end
  return 1
end
