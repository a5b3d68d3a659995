--[[
  retry: move failed or cancelled jobs back to waiting, starting over: attempts, errors,
  worker ids, result, failure reason and cancel flag are cleared; the job goes to the back of its
  priority's line.
  KEYS[1] wait ZSET  KEYS[2] failed ZSET  KEYS[3] cancelled ZSET  KEYS[4] meta HASH
  KEYS[5] events STREAM  KEYS[6] marker LIST
  ARGV[1] job key prefix: ARGV[1] .. job_id is the job HASH (same hash tag as KEYS)
  ARGV[2] events maxlen  ARGV[3..] job ids
  Returns: a list, one code per id: 1 retried | 0 not failed or cancelled (nothing written;
           a replay finds the job waiting) | -1 JOB_NOT_FOUND
  Events:  "waiting" with why = "retried", per retried job
]]
--@include wait_score
--@include emit
--@include wake
local rcall = redis.call
local wait_key, failed_key, cancelled_key, meta_key, events_key, marker_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local job_prefix = ARGV[1]
local maxlen = tonumber(ARGV[2])
local out = {}
local any = false
for i = 3, #ARGV do
  local job_id = ARGV[i]
  local job_key = job_prefix .. job_id
  local fields = rcall('HMGET', job_key, 's', 'p')
  local state = fields[1]
  if not state then
    out[#out + 1] = -1
  elseif state ~= 'failed' and state ~= 'cancelled' then
    out[#out + 1] = 0
  else
    rcall('ZREM', failed_key, job_id)
    rcall('ZREM', cancelled_key, job_id)
    local score = next_wait_score(meta_key, fields[2] or 0)
    rcall('HDEL', job_key, 'f', 'why', 'cx', 'r', 'err', 'rec', 'run', 'wk', 'pg')
    rcall('HSET', job_key, 's', 'waiting', 'a', 0, 'ws', score)
    rcall('ZADD', wait_key, score, job_id)
    emit(events_key, maxlen, 'waiting', job_id, 'why', 'retried')
    out[#out + 1] = 1
    any = true
  end
end
if any then wake(marker_key) end
return out
