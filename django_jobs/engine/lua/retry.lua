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
--@include now
--@include job_retry
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local call = { ids = {}, done = {} }
for i = 3, #ARGV do call.ids[ARGV[i]] = true end
local now_ms = server_now_ms()
local out = {}
for i = 3, #ARGV do
  out[#out + 1] = job_retry(q, ARGV[i], now_ms, call)
end
if call.woke then wake(q.marker) end
return out
