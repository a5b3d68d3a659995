--[[
  claim: claim one named waiting or scheduled job with a fresh lease, whatever its place in
  line or due time (the testing modes of django_jobs.testing run a job at once with it).
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] active ZSET  KEYS[4] meta HASH
  KEYS[5] events STREAM  KEYS[6] job HASH
  ARGV[1] job_id  ARGV[2] events maxlen  ARGV[3] lease_ms  ARGV[4] worker_id
  Returns: { token, data, attempt, enqueued_ms, correlation_id, parent_id }
           | 0 the job is not waiting or scheduled (nothing written) | -1 JOB_NOT_FOUND
  Events:  "active"
]]
--@include now
--@include emit
--@include mark_active
local rcall = redis.call
local wait_key, scheduled_key, active_key, meta_key, events_key, job_key =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local job_id = ARGV[1]
local maxlen = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local worker_id = ARGV[4]
local fields = rcall('HMGET', job_key, 'd', 'e', 'cid', 'par', 'st', 'a', 'wk', 's', 'lk')
if not fields[1] then return -1 end
local state = fields[8]
if state ~= 'waiting' and state ~= 'scheduled' then return 0 end
local now_ms = server_now_ms()
-- A waiting job's place in line is kept in 'ws' (includes/mark_active) for a release or recovery.
local ws = state == 'waiting' and rcall('ZSCORE', wait_key, job_id) or nil
rcall('ZREM', wait_key, job_id)
rcall('ZREM', scheduled_key, job_id)
if fields[9] then rcall('ZREM', fields[9] .. 'p', job_id) end -- a parked job leaves its key's list
local token = rcall('HINCRBY', meta_key, 'fence', 1)
local attempt = mark_active(job_key, fields, token, worker_id, cjson.encode(worker_id), now_ms, ws)
rcall('HDEL', job_key, 'run')
rcall('ZADD', active_key, now_ms + lease_ms, job_id)
emit(events_key, maxlen, 'active', job_id)
return { token, fields[1], attempt, fields[2] or 0, fields[3] or '', fields[4] or '' }
