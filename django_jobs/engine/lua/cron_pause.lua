--[[
  cron_pause: pause or resume one cron schedule, for every supervisor (the leader reads the flag
  before each tick, and cron_claim refuses a tick of a paused schedule).
  KEYS[1] cron state HASH
  ARGV[1] schedule name  ARGV[2] "1" pause | "0" resume
  State fields: "<name>:paused" Redis time of the pause, ms (absent when running);
  "<name>:resumed" Redis time of the last resume, ms: ticks up to it are never fired (the ticks
  that fell while paused are dropped, not caught up by the MISSED policy).
  Returns: 1 changed | 0 already in that state (a replay)
  Events:  none (a schedule is not a job)
]]
--@include now
local rcall = redis.call
local state_key = KEYS[1]
local name = ARGV[1]
local paused = rcall('HGET', state_key, name .. ':paused')
if ARGV[2] == '1' then
  if paused then return 0 end
  rcall('HSET', state_key, name .. ':paused', server_now_ms())
  return 1
end
if not paused then return 0 end
rcall('HDEL', state_key, name .. ':paused')
rcall('HSET', state_key, name .. ':resumed', server_now_ms())
return 1
