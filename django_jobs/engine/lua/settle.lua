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
  Body: includes/job_finish.lua (job_settle), the one place that transition is written; the loop
  over the batch is includes/settle_batch.lua, which settle_and_fetch.lua runs too.
]]
--@include settle_batch
return settle_batch(ARGV, ARGV, 7)
