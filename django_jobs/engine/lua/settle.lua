--[[
  settle: apply a batch of outcomes of active jobs (complete, retry, fail, cancelled).
  Fenced: an outcome applies only while the job is active with the same lease token.
  Replay-safe: the same outcome sent twice (a resent script after a dropped reply) finds
  the job already in the outcome's state with the same token and reports success again.
  KEYS[1] active ZSET  KEYS[2] wait ZSET  KEYS[3] scheduled ZSET  KEYS[4] completed ZSET
  KEYS[5] failed ZSET  KEYS[6] cancelled ZSET  KEYS[7] meta HASH  KEYS[8] events STREAM
  KEYS[9] marker LIST
  ARGV[1] job key prefix  ARGV[2] events maxlen
  ARGV[3] keep completed ms  ARGV[4] keep completed count
  ARGV[5] keep failed ms     ARGV[6] keep failed count
  ARGV[7..] groups of 6: job_id, token, kind ("c" complete | "r" retry | "f" fail |
            "x" cancelled | "l" rate limited: back to scheduled after delay_ms, the attempt
            not counted; value "queue" / "key" also holds the queue / the job's limit key back, see includes/rate_limited),
            value (result JSON for "c", error JSON otherwise),
            delay_ms (retry; 0 = straight back to waiting), keep_ms (per-job retention; 0 = queue default;
            < 0 = delete at finish: keep_result=0)
  A retry of a job whose cancel was requested while it ran cancels it instead.
  Returns: a list, one code per outcome: 1 applied (or already applied: replay)
           | -1 JOB_NOT_FOUND | -3 NOT_OWNER | -4 BAD_REQUEST (unknown kind; nothing written)
  Events:  "completed" | "retrying" | "failed" | "cancelled" | "rate_limited" per applied outcome
           (none on replay), batched: one entry per event kind for the call (includes/emit)
  Flows:   an ended flow job updates its parent and children (includes/flow.lua, other queues' keys)
  Body: includes/job_finish.lua (job_settle), the one place that transition is written.
]]
--@include job_finish
--@include trim
--@include slot_freed
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local keep_completed_count, keep_failed_count = tonumber(ARGV[4]), tonumber(ARGV[6])
-- The server time is read when first needed: a batch of completions kept for no time needs none.
local clock = {}
-- Whether flow jobs may live in this queue (includes/flow) and whether a fetch waits for a free
-- concurrency slot (includes/slot_freed): one read of meta for both. Nothing below sets either
-- for this queue.
local meta = redis.call('HMGET', q.meta, 'flows', 'cw')
flows_read(q.base, meta[1])
emit_batch()  -- one events entry per event kind (and fields) for the whole batch (includes/emit)
local results = {}
-- Leaving active and entering completed are batched into one ZREM and one ZADD per call.
local acc = { left = {}, completed = {}, gone = {}, keep_c = tonumber(ARGV[3]), keep_f = tonumber(ARGV[5]) }
-- turn: a settled token is a multiple of TRIM_EVERY (includes/trim); tokens are drawn once each.
local turn = false
for i = 7, #ARGV, 6 do
  results[#results + 1] = job_settle(q, acc, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], tonumber(ARGV[i + 4]),
                                     tonumber(ARGV[i + 5]), clock)
  local token = tonumber(ARGV[i + 1])
  if token and token % TRIM_EVERY == 0 then turn = true end
end
-- unpack() takes a few thousand values at most: send long lists in slices.
local SLICE = 2000
for first = 1, #acc.left, SLICE do
  redis.call('ZREM', q.active, unpack(acc.left, first, math.min(first + SLICE - 1, #acc.left)))
end
for first = 1, #acc.completed, SLICE do
  redis.call('ZADD', q.completed, unpack(acc.completed, first, math.min(first + SLICE - 1, #acc.completed)))
end
-- Completed jobs kept for no time (their events are written): one DEL, after every reader.
for first = 1, #acc.gone, SLICE do
  redis.call('DEL', unpack(acc.gone, first, math.min(first + SLICE - 1, #acc.gone)))
end
if acc.woke then wake(q.marker) end
if #acc.left > 0 then slot_freed(q.meta, q.marker, meta[2]) end
-- (clock.ms is nil when only completions kept for no time were applied: trim reads the clock
-- only if the set holds jobs.) Completions that all were kept for no time added nothing to the
-- set: it holds only jobs kept earlier (another setting, a per-job keep), trimmed on the call
-- whose tokens include a multiple of TRIM_EVERY (one ZCARD saved on the others).
if acc.touched_completed and (#acc.completed > 0 or turn) then
  trim_finished(q.completed, q.job, clock.ms, keep_completed_count)
end
if acc.touched_failed then
  trim_finished(q.failed, q.job, clock.ms, keep_failed_count)
  trim_finished(q.cancelled, q.job, clock.ms, keep_failed_count)
end
emit_flush()
return results
