--[[
  cancel: cancel a waiting or scheduled job; ask a running job to stop.
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] cancelled ZSET  KEYS[4] events STREAM
  KEYS[5] job HASH
  ARGV[1] job_id  ARGV[2] events maxlen  ARGV[3] keep ms
  Returns: 1 cancelled | 2 cancel requested (job is running) | 0 already finished (no-op)
           | -1 JOB_NOT_FOUND
  Events:  "cancelled" | "cancel_requested" (on the first request only; asking again is a no-op)
  The body is includes/job_cancel.lua (also cancel_many.lua's): the job leaves its set and its
  limit key's parked list, its unique key is released.
  Flows:   cancelling a parent cancels its unfinished children; a cancelled child applies its
           failure policy to its parent (includes/flow.lua, other queues' keys)
]]
--@include now
--@include job_cancel
local q = queue_of_prefix(string.sub(KEYS[5], 1, #KEYS[5] - #ARGV[1]), tonumber(ARGV[2]))
return job_cancel(q, ARGV[1], server_now_ms(), tonumber(ARGV[3]))
