--[[
  cancel_many: cancel many jobs of one queue at once (the admin's bulk cancel); per job the
  same transition as cancel.lua: waiting/scheduled -> cancelled, active -> cancel requested.
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] cancelled ZSET  KEYS[4] events STREAM
  ARGV[1] job key prefix: ARGV[1] .. job_id is the job HASH (same hash tag as KEYS)
  ARGV[2] events maxlen  ARGV[3] keep ms (cancelled jobs are kept as failed ones)  ARGV[4..] job ids
  Returns: a list, one code per id: 1 cancelled | 2 cancel requested (job is running)
           | 0 already finished (no-op; a replay finds the job cancelled) | -1 JOB_NOT_FOUND
  Events:  "cancelled" per cancelled job | "cancel_requested" (first request only)
  The body of each cancel is includes/job_cancel.lua, as for cancel.lua:
  Flows:   cancelling a parent cancels its unfinished children; a cancelled child applies its
           failure policy to its parent (includes/flow.lua, other queues' keys)
]]
--@include now
--@include job_cancel
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local keep_ms = tonumber(ARGV[3])
local now_ms = server_now_ms()
local out = {}
for i = 4, #ARGV do
  out[#out + 1] = job_cancel(q, ARGV[i], now_ms, keep_ms)
end
return out
