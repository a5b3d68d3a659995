--[[
  flow_enqueue_part: create the jobs of a flow that live on one queue, for a flow over several
  queues on a Redis Cluster (one call per queue and depth, parents before their children:
  engine/transitions.py enqueue_flow; docs/flows.md#redis-cluster).
  KEYS[1]: the queue's meta key, not used by the script: it routes the call to the queue's
  slot. Every key is built from the queue key base in ARGV ("djj:{queue}:", engine/keys.py):
  base .. 'job:' .. id, 'wait', 'scheduled', 'waiting_children', 'meta', 'events', 'marker'.
  ARGV[1] events maxlen  ARGV[2] enqueued ms every job holds ('0': the server time now, the
  first part)  ARGV[3] the flow's nonce (stored as 'fn': tells a replay of this flow from
  another flow that reuses an id)
  ARGV[4..] groups of 12, as flow_enqueue.lua (all of one queue base)
  Every job also gets 'xs' = 1: its flow steps toward jobs of other queues go through the
  outbox and the relay (includes/flow.lua), never in place.
  Replay-safe: a job that exists with the same nonce is skipped (a replayed call, or a part
  written before a crash and sent again); the others are created.
  Returns: {1, enqueued ms} written (or already there) | {0, the 'e' of the job found}: a job
           of this part exists with another nonce (a duplicate id: nothing written)
  Events:  "waiting_children", "waiting" or "scheduled" per job created
  Body: includes/job_store.lua, the one place that transition is written.
]]
--@include now
--@include wake
--@include flow_job
local maxlen = tonumber(ARGV[1])
local nonce = ARGV[3]
local N = 12
local skip = {}
for i = 4, #ARGV, N do
  local job_key = ARGV[i] .. 'job:' .. ARGV[i + 1]
  local found = redis.call('HMGET', job_key, 'd', 'fn')
  if found[1] then
    if found[2] ~= nonce then return { 0, stored_enqueued_ms(job_key) } end
    skip[i] = true
  end
end
local now_ms = tonumber(ARGV[2])
if now_ms == 0 then now_ms = server_now_ms() end
local woken, marked = {}, {}
for i = 4, #ARGV, N do
  local q = queue_keys(ARGV[i], maxlen)
  mark_flows(q, marked)
  if not skip[i] then
    local j = flow_job(i, now_ms)
    local code = job_store(q, j, now_ms)
    redis.call('HSET', q.job .. j.id, 'xs', 1, 'fn', nonce)
    if code ~= 5 and not woken[q.base] then
      woken[q.base] = true
      wake(q.marker)
    end
  end
end
return { 1, now_ms }
