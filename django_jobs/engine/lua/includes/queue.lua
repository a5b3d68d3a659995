-- The key names of one queue, built from its key base ("djj:{queue}:", the layout of
-- engine/keys.py), with the events stream's maxlen. Every transition body (includes/job_*.lua)
-- takes such a table q, so one body serves every entry point and every queue of a flow.
-- q.set maps a state to the ZSET that holds the jobs in it. Cached per script call.
local QUEUE_KEYS = {}
local function queue_keys(base, maxlen)
  local q = QUEUE_KEYS[base]
  if q then return q end
  q = { base = base, job = base .. 'job:', wait = base .. 'wait', scheduled = base .. 'scheduled',
        active = base .. 'active', completed = base .. 'completed', failed = base .. 'failed',
        cancelled = base .. 'cancelled', waiting_children = base .. 'waiting_children', meta = base .. 'meta',
        events = base .. 'events', marker = base .. 'marker', maxlen = maxlen }
  q.set = { waiting = q.wait, scheduled = q.scheduled, active = q.active, completed = q.completed,
            failed = q.failed, cancelled = q.cancelled, waiting_children = q.waiting_children }
  QUEUE_KEYS[base] = q
  return q
end

-- The queue of a job key prefix ("djj:{queue}:job:", what the entry points get in ARGV[1]).
local function queue_of_prefix(job_prefix, maxlen)
  return queue_keys(string.sub(job_prefix, 1, -5), maxlen)
end
