--[[
  enqueue: add one or more new jobs to a queue (bulk in one call).
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] meta HASH  KEYS[4] events STREAM
  KEYS[5] marker LIST
  ARGV[1] job key prefix ("djj:{queue}:job:", same hash tag as KEYS)
  ARGV[2] events maxlen
  ARGV[3] the jobs, packed in one JSON object of columns (one decode here instead of 7
          arguments per job; engine/transitions.py _pack_jobs): "i" ids, "d" data_json (lists,
          one entry per job), and "p" priority, "r" run_at_ms (0 = none), "y" delay_ms,
          "c" correlation_id, "a" parent_id: each a list, or one value every job shares
  Returns: a flat list, two entries per job: code, enqueued ms, with code 1 created (waiting),
           2 created (scheduled), 0 a job with this id already exists (replay or duplicate id:
           nothing written); enqueued ms is the 'e' the job's hash holds (this call's server
           time, or the existing job's: a replay returns what the first call stored)
  Events:  "waiting" or "scheduled" per created job
  Body: includes/job_store.lua, the one place that transition is written.
]]
--@include now
--@include wake
--@include job_store
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local now_ms = server_now_ms()
local results = {}
-- Jobs due now take consecutive sequence numbers (one read and one write of the counter) and
-- enter wait with one ZADD per 1,000; a single job draws its score with one HINCRBY.
local jobs = cjson.decode(ARGV[3])
local ids, data = jobs.i, jobs.d
local function column(value, i)
  if type(value) == 'table' then return value[i] end
  return value
end
local scores, zadd = nil, {}
if #ids > 1 then scores = wait_score_batch(q.meta) end
for i = 1, #ids do
  local code, enqueued_ms = job_store(q, {
    id = ids[i], d = data[i], p = column(jobs.p, i), due = job_due(now_ms, column(jobs.r, i), column(jobs.y, i)),
    cid = column(jobs.c, i), par = column(jobs.a, i),
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
return results
