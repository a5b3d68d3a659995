--[[
  cron_done: record that the job of a claimed tick is in its queue (enqueued, or existed).
  KEYS[1] cron state HASH
  ARGV[1] schedule name  ARGV[2] slot_ms  ARGV[3] job id
  Sets "<name>:enq" (the latest slot known to be enqueued; never moves back) and "<name>:job".
  Returns: 1 recorded, 0 a later slot was recorded already (replay or late writer)
  Events:  none
]]
local rcall = redis.call
local state_key = KEYS[1]
local name, slot = ARGV[1], tonumber(ARGV[2])
local done = tonumber(rcall('HGET', state_key, name .. ':enq'))
if done and done >= slot then return 0 end
rcall('HSET', state_key, name .. ':enq', ARGV[2], name .. ':job', ARGV[3])
return 1
