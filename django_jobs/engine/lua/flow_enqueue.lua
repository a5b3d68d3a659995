--[[
  flow_enqueue: create a whole flow (a tree of jobs on any queues) at once: all of it or nothing.
  KEYS[1]: the root queue's meta key, not used by the script: it routes the call to the flow's
  slot on a Redis Cluster. Every key is built from a queue key base in ARGV ("djj:{queue}:", formatted
  by engine/keys.py): base .. 'job:' .. id, base .. 'wait', 'scheduled', 'waiting_children',
  'meta', 'events', 'marker'. A flow may span queues, so it needs a single Redis server
  (docs/flows.md#redis-cluster).
  ARGV[1] events maxlen
  ARGV[2..] groups of 12: base, job_id, data_json, priority, run_at_ms (0 = none), delay_ms,
            correlation_id, parent_id, parent base ('' for the root), failure policy
            ('' fail the parent | 'i' ignore | 'r' remove), keep ms (failed/cancelled by a
            flow step), children JSON ([[base, id, queue, name], ...]; '' for a leaf)
  Marks each queue of the flow with meta field 'flows' = 1 (includes/flow.lua skips queues
  without it). A job with children waits in waiting_children with 'pend' = its number of children; a leaf
  goes to wait (or scheduled when it has a due time later than now).
  Returns: {code, enqueued ms}: {1, the server time every job of the flow holds as 'e'} created |
           {0, the 'e' of the first job found existing (a replay: what the first call stored)}
           a job of the flow already exists (a replay or a duplicate id: nothing written)
  Events:  "waiting_children", "waiting" or "scheduled" per job, on its own queue's stream
  Body: includes/job_store.lua, the one place that transition is written.
]]
--@include now
--@include wake
--@include flow_job
local maxlen = tonumber(ARGV[1])
local N = 12
for i = 2, #ARGV, N do
  local job_key = ARGV[i] .. 'job:' .. ARGV[i + 1]
  if redis.call('EXISTS', job_key) == 1 then return { 0, stored_enqueued_ms(job_key) } end
end
local now_ms = server_now_ms()
local woken, marked = {}, {}
for i = 2, #ARGV, N do
  local q = queue_keys(ARGV[i], maxlen)
  mark_flows(q, marked)
  local j = flow_job(ARGV, i, now_ms)
  if job_store(q, j, now_ms) ~= 5 and not woken[q.base] then
    woken[q.base] = true
    wake(q.marker)
  end
end
return { 1, now_ms }
