--[[
  cron_claim: record that the leader fires one tick of a schedule (before it enqueues the job).
  KEYS[1] leader STRING ("<epoch>|<holder>")  KEYS[2] cron state HASH
  ARGV[1] "<epoch>|<holder>" of the caller  ARGV[2] schedule name  ARGV[3] slot_ms
  State fields per schedule <name>: "<name>" last claimed slot_ms, "<name>:tok" the leader
  token that claimed it, "<name>:at" Redis time of the claim, ms.
  Returns: 1 claimed (also when this same token claimed this slot already: a replay),
           0 the slot is not after the last claimed one (fired already: skip it),
           2 the schedule is paused ("<name>:paused" set by cron_pause.lua): skip the tick,
           -3 NOT_OWNER: the caller's lease or epoch is stale (a paused old leader)
  Events:  none (the enqueued job emits its own)
]]
--@include now
local rcall = redis.call
local leader_key, state_key = KEYS[1], KEYS[2]
local token, name, slot = ARGV[1], ARGV[2], tonumber(ARGV[3])
if rcall('GET', leader_key) ~= token then
  return -3
end
local fields = rcall('HMGET', state_key, name, name .. ':tok', name .. ':paused')
if fields[3] then return 2 end
local last = tonumber(fields[1])
if last and slot <= last then
  if slot == last and fields[2] == token then return 1 end
  return 0
end
rcall('HSET', state_key, name, ARGV[3], name .. ':tok', token, name .. ':at', server_now_ms())
return 1
