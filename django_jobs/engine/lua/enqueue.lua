--[[
  enqueue: add one or more new jobs to a queue (bulk in one call).
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] meta HASH  KEYS[4] events STREAM
  KEYS[5] marker LIST
  ARGV[1] job key prefix ("djj:{queue}:job:", same hash tag as KEYS)
  ARGV[2] events maxlen
  ARGV[3] the jobs, packed in one JSON object of columns (one decode here instead of 7
          arguments per job; engine/transitions.py _pack_jobs): "i" ids, "d" data_json (lists,
          one entry per job), and "p" priority, "r" run_at_ms (0 = none), "y" delay_ms,
          "c" correlation_id, "a" parent_id: each a list, or one value every job shares;
          "l" 1: LEAN_JOB_HASH (a waiting job's hash without 'p' at 0 and 'ws': includes/job_store);
  or ARGV[3..] groups of 7 (one job: cheaper than packing it): job_id, data_json, priority,
          run_at_ms, delay_ms, correlation_id, parent_id; one job may add ARGV[10] "1": LEAN_JOB_HASH
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
if #ARGV == 9 or #ARGV == 10 then
  -- One job (job.enqueue()): no columns, no batch, no list of scores; job_store does its ZADD.
  local code, enqueued_ms = job_store(q, {
    id = ARGV[3], d = ARGV[4], p = ARGV[5], due = job_due(now_ms, ARGV[6], ARGV[7]), cid = ARGV[8], par = ARGV[9],
    lean = ARGV[10] ~= nil,
  }, now_ms)
  if code ~= 0 then wake(q.marker) end
  return { code, enqueued_ms }
end
local results = {}
-- Jobs due now take consecutive sequence numbers (one read and one write of the counter) and
-- enter wait with one ZADD per 1,000; a single job draws its score with one HINCRBY.
local count, job
local lean = false
if #ARGV == 3 then
  local jobs = cjson.decode(ARGV[3])
  lean = jobs.l ~= nil
  local function column(value, i)
    if type(value) == 'table' then return value[i] end
    return value
  end
  count = #jobs.i
  job = function(i)
    return jobs.i[i], jobs.d[i], column(jobs.p, i), column(jobs.r, i), column(jobs.y, i), column(jobs.c, i), column(jobs.a, i)
  end
else
  count = (#ARGV - 2) / 7
  job = function(i)
    local a = 3 + (i - 1) * 7
    return ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6]
  end
end
-- Several jobs: one events entry per event kind for the whole call (includes/emit).
if count > 1 then emit_batch() end
local scores, zadd = nil, {}
if count > 1 then scores = wait_score_batch(q.meta) end
for i = 1, count do
  local id, d, p, run_at, delay, cid, par = job(i)
  local code, enqueued_ms = job_store(q, {
    id = id, d = d, p = p, due = job_due(now_ms, run_at, delay), cid = cid, par = par, lean = lean,
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
