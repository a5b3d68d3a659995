--[[
  recover: return jobs whose lease expired (their worker died or stalled) to waiting,
  at their original place in line; after max_recoveries, fail them as "worker_lost".
  A job whose cancel was requested while it ran is cancelled instead of run again.
  Idempotent: any process may run it at any time.
  KEYS[1] active ZSET  KEYS[2] wait ZSET  KEYS[3] failed ZSET  KEYS[4] meta HASH
  KEYS[5] events STREAM  KEYS[6] marker LIST  KEYS[7] cancelled ZSET
  KEYS[8] scheduled ZSET (a freed per-key slot promotes a parked job: includes/key_slot_freed)
  ARGV[1] job key prefix  ARGV[2] events maxlen  ARGV[3] max_recoveries  ARGV[4] limit
  ARGV[5] keep failed ms (also for cancelled)  ARGV[6] now_ms override for tests (0 = Redis time)
  Returns: { recovered_count, failed_count, cancelled_count, { job_id, what, correlation_id, ... } }
           with what 'stalled' (back to waiting) | 'failed' (worker_lost) | 'cancelled', per job handled
  Events:  "stalled" per job back to waiting, "failed" (why=worker_lost) per job past
           max_recoveries, "cancelled" per cancel-requested job
  Flows:   an ended flow job updates its parent and children (includes/flow.lua, other queues' keys)
  Body: includes/job_recover.lua, the one place that transition is written.
]]
--@include job_recover
--@include slot_freed
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local max_recoveries = tonumber(ARGV[3])
local keep_ms = tonumber(ARGV[5])
local now_ms = tonumber(ARGV[6])
if now_ms == 0 then now_ms = server_now_ms() end
local clock = { ms = now_ms }
-- A lease is valid until its deadline; it has expired once the deadline is in the past.
local expired = redis.call('ZRANGEBYSCORE', q.active, '-inf', string.format('(%d', now_ms), 'LIMIT', 0, tonumber(ARGV[4]))
local counts = { stalled = 0, failed = 0, cancelled = 0 }
local outcomes = {} -- job_id, what ('stalled' | 'failed' | 'cancelled'), correlation_id, ...
for i = 1, #expired do
  local done = job_recover(q, expired[i], clock, keep_ms, max_recoveries)
  if done then
    counts[done[1]] = counts[done[1]] + 1
    outcomes[#outcomes + 1] = expired[i]
    outcomes[#outcomes + 1] = done[1]
    outcomes[#outcomes + 1] = done[2]
  end
end
if counts.stalled > 0 then wake(q.marker) end
if #expired > 0 then slot_freed(q.meta, q.marker) end
return { counts.stalled, counts.failed, counts.cancelled, outcomes }
