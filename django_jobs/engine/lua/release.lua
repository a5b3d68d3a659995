--[[
  release: put a worker's unfinished active jobs back to waiting at once (graceful shutdown),
  at their original place in line. Fenced by token; the interrupted run is not an attempt.
  KEYS[1] active ZSET  KEYS[2] wait ZSET  KEYS[3] meta HASH  KEYS[4] events STREAM
  KEYS[5] marker LIST
  ARGV[1] job key prefix  ARGV[2] events maxlen  ARGV[3..] pairs of job_id, token
  Returns: number of jobs released
  Events:  "released" per job
]]
--@include now
--@include wait_score
--@include emit
--@include wake
local rcall = redis.call
local active_key, wait_key, meta_key, events_key, marker_key = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local job_prefix = ARGV[1]
local maxlen = tonumber(ARGV[2])
local released = 0
for i = 3, #ARGV, 2 do
  local job_id, token = ARGV[i], ARGV[i + 1]
  local job_key = job_prefix .. job_id
  local fields = rcall('HMGET', job_key, 's', 'tok', 'ws', 'p')
  if fields[1] == 'active' and fields[2] == token then
    rcall('ZREM', active_key, job_id)
    rcall('HINCRBY', job_key, 'a', -1)
    rcall('HDEL', job_key, 'tok', 'w')
    local score = tonumber(fields[3]) or next_wait_score(meta_key, fields[4] or 0)
    rcall('ZADD', wait_key, score, job_id)
    rcall('HSET', job_key, 's', 'waiting')
    emit(events_key, maxlen, 'released', job_id)
    released = released + 1
  end
end
if released > 0 then wake(marker_key) end
return released
