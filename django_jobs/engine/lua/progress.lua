--[[
  progress: record a running job's progress (a number or a small JSON value), fenced by token.
  KEYS[1] job HASH  KEYS[2] events STREAM
  ARGV[1] job_id  ARGV[2] token  ARGV[3] progress JSON  ARGV[4] events maxlen
  Returns: 1 recorded | -1 JOB_NOT_FOUND | -3 NOT_OWNER (not active under this token: the
           run was recovered, released or finished; nothing written)
  Events:  "progress" job_id, with pg = the progress JSON
]]
--@include emit
local rcall = redis.call
local job_key, events_key = KEYS[1], KEYS[2]
local fields = rcall('HMGET', job_key, 's', 'tok')
if not fields[1] then return -1 end
if fields[1] ~= 'active' or fields[2] ~= ARGV[2] then return -3 end
rcall('HSET', job_key, 'pg', ARGV[3])
emit(events_key, tonumber(ARGV[4]), 'progress', ARGV[1], 'pg', ARGV[3])
return 1
