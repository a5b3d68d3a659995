--[[
  fetch: promote due scheduled jobs, then claim up to N waiting jobs with fresh leases.
  KEYS[1] wait ZSET  KEYS[2] scheduled ZSET  KEYS[3] active ZSET  KEYS[4] meta HASH
  KEYS[5] events STREAM  KEYS[6] marker LIST  KEYS[7] rate ZSET (starts in the rate window)
  ARGV[1] job key prefix  ARGV[2] events maxlen  ARGV[3] count  ARGV[4] lease_ms
  ARGV[5] worker_id  ARGV[6] promote limit
  ARGV[7] default rate count (0 = none)  ARGV[8] default rate period ms
  ARGV[9] default concurrency (0 = none); run-time overrides in meta win (includes/queue_limits)
  ARGV[10] (optional) how many of the count the worker can start at once (its free threads;
           the rest would be claimed ahead). While a concurrency limit is in force the fetch
           claims at most this many: a job claimed ahead would count as running while it waits.
           "" = none (when ARGV[11] follows).
  ARGV[11] (optional) "1": the queue's ACTIVE_EVENTS is False: no "active" events, unless a
           database mirror holds the queue (it records every state: includes/mirror)
  A job with a limit key ('lk' in its hash) that is over its key's limits is parked instead of
  claimed: moved to scheduled (includes/key_limits; its keys are named from 'lk', same hash tag).
  Returns: { next_due_ms, paused, id, token, data, attempt, enqueued_ms, correlation_id,
             parent_id, ... } with next_due_ms = ms until the next scheduled job is due
             (-1 none), or until a limit may let a waiting job start when one held the
             queue back, paused = 1 when the queue is paused (nothing claimed), 2 when the
             count was cut to ARGV[10] by a concurrency limit (a freed thread may claim more).
  Events:  "waiting" per promoted job, "active" per claimed job (not with ARGV[11]), "limited" per parked job,
           batched: one entry per event kind for the call (includes/emit); a call that claims
           trims the stream only when its tokens cross a multiple of 32 (emit_untrimmed_call)
]]
--@include fetch_batch
return fetch_batch(KEYS, ARGV)
