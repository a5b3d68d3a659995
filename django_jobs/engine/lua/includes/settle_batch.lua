-- settle's batch: apply a batch of outcomes of one queue's active jobs, for settle.lua and
-- settle_and_fetch.lua (their headers have the arguments, the codes and the events). The
-- outcome itself is job_settle (includes/job_finish), the one place that transition is written;
-- this is the loop over a batch around it (one ZREM, one ZADD, one DEL, the trims, the wake-up
-- and the events of the whole batch).
--@include job_finish
--@include trim
--@include slot_freed

-- a: the queue's settings, as settle.lua's ARGV[1..6] (job key prefix, events maxlen, keep
-- completed ms and count, keep failed ms and count). o: the outcomes, groups of 6 (job_id, token,
-- kind, value, delay_ms, keep_ms) from o[from] on: settle.lua's ARGV from 7, or the list
-- settle_and_fetch.lua decoded from one packed string (numbers there are Lua numbers).
-- Returns a list, one code per outcome.
local function settle_batch(a, o, from)
  local q = queue_of_prefix(a[1], tonumber(a[2]))
  local keep_completed_count, keep_failed_count = tonumber(a[4]), tonumber(a[6])
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
  local acc = { left = {}, completed = {}, gone = {}, keep_c = tonumber(a[3]), keep_f = tonumber(a[5]) }
  -- turn: a settled token is a multiple of TRIM_EVERY (includes/trim); tokens are drawn once each.
  local turn = false
  for i = from, #o, 6 do
    results[#results + 1] = job_settle(q, acc, o[i], o[i + 1], o[i + 2], o[i + 3], tonumber(o[i + 4]),
                                       tonumber(o[i + 5]), clock)
    local token = tonumber(o[i + 1])
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
end
