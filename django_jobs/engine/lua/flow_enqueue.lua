--[[
  flow_enqueue: create a whole flow (a tree of jobs on any queues) at once: all of it or nothing.
  KEYS: none. Every key is built from a queue key base in ARGV ("djj:{queue}:", formatted
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
  Returns: 1 created | 0 a job of the flow already exists (a replay or a duplicate id:
           nothing written)
  Events:  "waiting_children", "waiting" or "scheduled" per job, on its own queue's stream
]]
--@include now
--@include wait_score
--@include emit
--@include wake
local rcall = redis.call
local maxlen = tonumber(ARGV[1])
local N = 12
for i = 2, #ARGV, N do
  if rcall('EXISTS', ARGV[i] .. 'job:' .. ARGV[i + 1]) == 1 then return 0 end
end
local now_ms = server_now_ms()
local woken, marked = {}, {}
for i = 2, #ARGV, N do
  local base, job_id, priority = ARGV[i], ARGV[i + 1], ARGV[i + 3]
  if not marked[base] then
    marked[base] = true
    rcall('HSET', base .. 'meta', 'flows', 1)
  end
  local job_key = base .. 'job:' .. job_id
  local kids = ARGV[i + 11]
  rcall('HSET', job_key, 'd', ARGV[i + 2], 'p', priority, 'a', 0, 'e', now_ms, 'cid', ARGV[i + 6],
        'par', ARGV[i + 7], 'fk', ARGV[i + 10])
  if ARGV[i + 8] ~= '' then
    rcall('HSET', job_key, 'pb', ARGV[i + 8])
    if ARGV[i + 9] ~= '' then rcall('HSET', job_key, 'fp', ARGV[i + 9]) end
  end
  if kids ~= '' then
    rcall('HSET', job_key, 'kids', kids, 'pend', #cjson.decode(kids), 's', 'waiting_children')
    rcall('ZADD', base .. 'waiting_children', now_ms, job_id)
    emit(base .. 'events', maxlen, 'waiting_children', job_id)
  else
    local due = now_ms + tonumber(ARGV[i + 5])
    local run_at = tonumber(ARGV[i + 4])
    if run_at > due then due = run_at end
    if due > now_ms then
      rcall('HSET', job_key, 's', 'scheduled', 'run', due)
      rcall('ZADD', base .. 'scheduled', due, job_id)
      emit(base .. 'events', maxlen, 'scheduled', job_id)
    else
      local score = next_wait_score(base .. 'meta', priority)
      rcall('HSET', job_key, 's', 'waiting', 'ws', score)
      rcall('ZADD', base .. 'wait', score, job_id)
      emit(base .. 'events', maxlen, 'waiting', job_id)
    end
    if not woken[base] then
      woken[base] = true
      wake(base .. 'marker')
    end
  end
end
return 1
