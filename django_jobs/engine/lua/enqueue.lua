--[[
  enqueue: add one or more new jobs to a queue (bulk in one call).
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] meta HASH  KEYS[4] events STREAM
  KEYS[5] marker LIST
  ARGV[1] job key prefix ("djj:{queue}:job:", same hash tag as KEYS)
  ARGV[2] events maxlen
  ARGV[3..] groups of 7: job_id, data_json, priority, run_at_ms (0 = none), delay_ms,
            correlation_id, parent_id
  Returns: a flat list, two entries per job: code, enqueued ms, with code 1 created (waiting),
           2 created (scheduled), 0 a job with this id already exists (replay or duplicate id:
           nothing written); enqueued ms is the 'e' the job's hash holds (this call's server
           time, or the existing job's: a replay returns what the first call stored)
  Events:  "waiting" or "scheduled" per created job, batched: one entry per kind (includes/emit)
  Body: includes/job_store.lua, the one place that transition is written.
]]
--@include now
--@include wake
--@include job_store
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local now_ms = server_now_ms()
-- Several jobs: one events entry per event kind for the whole call (includes/emit).
if #ARGV > 3 + 7 then emit_batch() end
local results = {}
-- Jobs due now take consecutive sequence numbers (one read and one write of the counter) and
-- enter wait with one ZADD per 1,000; a single job draws its score with one HINCRBY.
local scores, zadd = nil, {}
if #ARGV > 3 + 7 then scores = wait_score_batch(q.meta) end
for i = 3, #ARGV, 7 do
  local code, enqueued_ms = job_store(q, {
    id = ARGV[i], d = ARGV[i + 1], p = ARGV[i + 2], due = job_due(now_ms, ARGV[i + 3], ARGV[i + 4]),
    cid = ARGV[i + 5], par = ARGV[i + 6],
  }, now_ms, scores, zadd)
  results[#results + 1] = code
  results[#results + 1] = enqueued_ms
end
if scores then scores.flush() end
for first = 1, #zadd, 2000 do
  redis.call('ZADD', q.wait, unpack(zadd, first, math.min(first + 1999, #zadd)))
end
for i = 1, #results, 2 do
  if results[i] ~= 0 then
    wake(q.marker)
    break
  end
end
emit_flush()
return results
