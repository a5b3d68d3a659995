--[[
  enqueue: add one or more new jobs to a queue (bulk in one call).
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] meta HASH  KEYS[4] events STREAM
  KEYS[5] marker LIST
  ARGV[1] job key prefix ("djj:{queue}:job:", same hash tag as KEYS)
  ARGV[2] events maxlen
  ARGV[3..] groups of 7: job_id, data_json, priority, run_at_ms (0 = none), delay_ms,
            correlation_id, parent_id
  Returns: a list with one entry per job: 1 created (waiting), 2 created (scheduled),
           0 a job with this id already exists (replay or duplicate id: nothing written)
  Events:  "waiting" or "scheduled" per created job
]]
--@include now
--@include wait_score
--@include emit
--@include wake
local rcall = redis.call
local wait_key, scheduled_key, meta_key, events_key, marker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_prefix = ARGV[1]
local maxlen = tonumber(ARGV[2])
local now_ms = server_now_ms()
local results = {}
local woke = false

-- Pass 1: create each new job hash (HSETNX doubles as the existence check: a replayed or
-- duplicate id writes nothing) and find which jobs are due now.
local ready = {}
for i = 3, #ARGV, 7 do
  local job_id = ARGV[i]
  local job_key = job_prefix .. job_id
  if rcall('HSETNX', job_key, 'd', ARGV[i + 1]) == 0 then
    results[#results + 1] = 0
  else
    local run_at = tonumber(ARGV[i + 3])
    local due = now_ms + tonumber(ARGV[i + 4])
    if run_at > due then due = run_at end
    if due > now_ms then
      rcall('HSET', job_key, 'p', ARGV[i + 2], 'a', 0, 'e', now_ms, 'cid', ARGV[i + 5], 'par', ARGV[i + 6],
            's', 'scheduled', 'run', due)
      rcall('ZADD', scheduled_key, due, job_id)
      emit(events_key, maxlen, 'scheduled', job_id)
      results[#results + 1] = 2
    else
      ready[#ready + 1] = i
      results[#results + 1] = 1
    end
    woke = true
  end
end
-- Pass 2: jobs due now take consecutive sequence numbers (one counter bump) and one ZADD.
if #ready > 0 then
  local seq = rcall('HINCRBY', meta_key, 'seq', #ready) - #ready
  local zadd_args = {}
  for n = 1, #ready do
    local i = ready[n]
    local job_id = ARGV[i]
    seq = seq + 1
    local score = (100 - tonumber(ARGV[i + 2])) * PRIORITY_SPAN + seq
    rcall('HSET', job_prefix .. job_id, 'p', ARGV[i + 2], 'a', 0, 'e', now_ms, 'cid', ARGV[i + 5],
          'par', ARGV[i + 6], 's', 'waiting', 'ws', score)
    zadd_args[#zadd_args + 1] = score
    zadd_args[#zadd_args + 1] = job_id
    emit(events_key, maxlen, 'waiting', job_id)
  end
  for first = 1, #zadd_args, 2000 do
    rcall('ZADD', wait_key, unpack(zadd_args, first, math.min(first + 1999, #zadd_args)))
  end
end
if woke then wake(marker_key) end
return results
