--[[
  delete: delete jobs that are not running (the admin's delete action), hash and all.
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] completed ZSET  KEYS[4] failed ZSET
  KEYS[5] cancelled ZSET  KEYS[6] events STREAM  KEYS[7] waiting_children ZSET
  ARGV[1] job key prefix: ARGV[1] .. job_id is the job HASH (same hash tag as KEYS)
  ARGV[2] events maxlen  ARGV[3..] job ids
  Flows: deleting a flow's root parent that waits for its children cancels its unfinished
  descendants first (includes/flow.lua; they may be on other queues). An unfinished child
  of a flow is not deleted (its parent waits for it): cancel it, which applies its policy.
  The body is includes/job_delete.lua: a deleted job also leaves its limit key's parked list
  and releases its unique key.
  Returns: a list, one code per id: 1 deleted | 0 not deleted: running, or an unfinished
           child of a flow (cancel it first) | -1 JOB_NOT_FOUND (also what a replay finds)
  Events:  "deleted" per deleted job (the mirror drops its row); "cancelled" per descendant
]]
--@include now
--@include job_delete
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local clock = {}
local out = {}
for i = 3, #ARGV do
  out[#out + 1] = job_delete(q, ARGV[i], clock)
end
return out
