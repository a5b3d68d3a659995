--[[
  renew: extend the leases of one worker's active jobs in one call.
  KEYS[1] active ZSET
  ARGV[1] job key prefix  ARGV[2] lease_ms  ARGV[3..] pairs of job_id, token
  Returns: { lost_ids, cancel_requested_ids }: lost = no longer owned by this token
           (the worker must drop them); cancel requested = the job was asked to stop.
  Events:  none (a lease renewal is not a state change)
]]
--@include now
local rcall = redis.call
local active_key = KEYS[1]
local job_prefix = ARGV[1]
local deadline = server_now_ms() + tonumber(ARGV[2])
local lost, cancel = {}, {}
for i = 3, #ARGV, 2 do
  local job_id, token = ARGV[i], ARGV[i + 1]
  local fields = rcall('HMGET', job_prefix .. job_id, 's', 'tok', 'cx')
  if fields[1] == 'active' and fields[2] == token then
    rcall('ZADD', active_key, 'XX', deadline, job_id)
    if fields[3] == '1' then cancel[#cancel + 1] = job_id end
  else
    lost[#lost + 1] = job_id
  end
end
return { lost, cancel }
