-- One part of a flow written in parts (a flow over several queues on a Redis Cluster:
-- engine/relay.py _enqueue_flow_parts; docs/flows.md#redis-cluster): the jobs of one queue at
-- one depth. The one body of that transition: flow_enqueue_part writes the first part (the
-- root's) with it, flow_deliver every other part (a create entry, kind 'c', of the root's outbox).
--@include wake
--@include flow_job

-- How long the mark of a written part (base .. 'part:' .. nonce .. ':' .. index) lives when its
-- writer died between writing the part and removing the mark (after the acknowledgement).
local FLOW_PART_MARK_MS = 7 * 24 * 3600 * 1000

-- Create the jobs of args[first..] (groups of 12, the layout of flow_enqueue.lua, one queue
-- base), each holding the enqueue time now_ms, 'xs' = 1 (its flow steps toward jobs of other
-- queues go through the outbox: includes/flow.lua) and 'fn' = nonce. Replay-safe: a job that
-- exists with this nonce is skipped (written by an earlier call); one that exists with another
-- nonce (a reused id) refuses the whole part.
-- Returns: 1, whether a job was skipped | 0, the 'e' of the job found with another nonce.
local function flow_part(args, first, maxlen, nonce, now_ms)
  local N = 12
  local skip, skipped = {}, false
  for i = first, #args, N do
    local job_key = args[i] .. 'job:' .. args[i + 1]
    local found = redis.call('HMGET', job_key, 'd', 'fn')
    if found[1] then
      if found[2] ~= nonce then return 0, stored_enqueued_ms(job_key) end
      skip[i], skipped = true, true
    end
  end
  local woken, marked = {}, {}
  for i = first, #args, N do
    local q = queue_keys(args[i], maxlen)
    mark_flows(q, marked)
    if not skip[i] then
      local j = flow_job(args, i, now_ms)
      local code = job_store(q, j, now_ms)
      redis.call('HSET', q.job .. j.id, 'xs', 1, 'fn', nonce)
      if code ~= 5 and not woken[q.base] then
        woken[q.base] = true
        wake(q.marker)
      end
    end
  end
  return 1, skipped
end
