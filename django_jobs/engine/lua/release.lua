--[[
  release: put a worker's unfinished active jobs back to waiting at once (graceful shutdown),
  at their original place in line. Fenced by token; the interrupted run is not an attempt.
  A job whose cancel was requested while it ran is cancelled instead of run again.
  KEYS[1] active ZSET  KEYS[2] wait ZSET  KEYS[3] meta HASH  KEYS[4] events STREAM
  KEYS[5] marker LIST  KEYS[6] cancelled ZSET
  KEYS[7] scheduled ZSET (a freed per-key slot promotes a parked job: includes/key_slot_freed)
  ARGV[1] job key prefix  ARGV[2] events maxlen  ARGV[3] keep cancelled ms
  ARGV[4..] pairs of job_id, token
  Returns: number of jobs released (back to waiting or cancelled); a replay releases 0
  Events:  "released" per job back to waiting, "cancelled" per cancel-requested job
  Flows:   a cancelled flow job updates its parent and children (includes/flow.lua, other queues' keys)
  Body: includes/job_release.lua, the one place that transition is written.
]]
--@include job_release
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local keep_ms = tonumber(ARGV[3])
local clock = {}
local released, requeued = 0, 0
for i = 4, #ARGV, 2 do
  local what = job_release(q, ARGV[i], ARGV[i + 1], clock, keep_ms)
  if what then released = released + 1 end
  if what == 'requeued' then requeued = requeued + 1 end
end
if requeued > 0 then wake(q.marker) end
return released
