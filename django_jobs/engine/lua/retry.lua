--[[
  retry: move failed or cancelled jobs back to waiting, starting over: attempts, errors,
  worker ids, result, failure reason and cancel flag are cleared; the job goes to the back of its
  priority's line.
  A job that held a unique key until it finished ('uk' in its hash) takes the key back when it
  is free, so a new enqueue with that key is deduplicated against it again (and the lock is
  released when it finishes, includes/unique_release). When another job now guards the key
  (includes/unique_guard) the job is not retried: retrying it would make two jobs of one key.
  A throttle window's key (no 'uk': its lock only lives for its window) is not taken back.
  KEYS[1] wait ZSET  KEYS[2] failed ZSET  KEYS[3] cancelled ZSET  KEYS[4] meta HASH
  KEYS[5] events STREAM  KEYS[6] marker LIST
  ARGV[1] job key prefix: ARGV[1] .. job_id is the job HASH (same hash tag as KEYS)
  ARGV[2] events maxlen  ARGV[3..] job ids
  Returns: a list, one code per id: 1 retried | 0 not failed or cancelled (nothing written;
           a replay finds the job waiting) | -1 JOB_NOT_FOUND | 2 not retried: another job
           guards its unique key (nothing written; retry it once that job is done)
  Events:  "waiting" with why = "retried", per retried job
]]
--@include wait_score
--@include emit
--@include wake
--@include unique_guard
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
  local fields = rcall('HMGET', job_key, 's', 'p', 'uk')
  local state, lock_key = fields[1], fields[3]
  local holder
  if lock_key and (state == 'failed' or state == 'cancelled') then
    holder = unique_guard(lock_key, job_prefix)
  end
  if not state then
    out[#out + 1] = -1
  elseif state ~= 'failed' and state ~= 'cancelled' then
    out[#out + 1] = 0
  elseif holder and holder ~= job_id then
    out[#out + 1] = 2
  else
    if lock_key then rcall('SET', lock_key, job_id) end
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
