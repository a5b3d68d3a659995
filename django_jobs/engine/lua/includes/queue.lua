-- The key names of one queue, built from its key base ("djj:{queue}:", the layout of
-- engine/keys.py), with the events stream's maxlen. Every transition body (includes/job_*.lua)
-- takes such a table q, so one body serves every entry point and every queue of a flow.
-- q.job is the job key prefix; q.wait, q.scheduled, q.active, q.completed, q.failed,
-- q.cancelled, q.waiting_children, q.meta, q.events, q.marker are base .. that name; q.set maps
-- a state to the ZSET that holds the jobs in it. Cached per script call.
-- A name is built the first time a body reads it (QUEUE_FIELDS): every line of a script's chunk
-- runs on every call, so a call pays only for the names it uses (a single enqueue reads 5 of
-- 13; building all cost it ~2-4 us: docs/performance.md, "Redis CPU per script call").
local QUEUE_KEYS = {}
local QUEUE_FIELDS = { __index = function(q, name)
  local v
  if name == 'set' then
    v = { waiting = q.wait, scheduled = q.scheduled, active = q.active, completed = q.completed,
          failed = q.failed, cancelled = q.cancelled, waiting_children = q.waiting_children }
  elseif name == 'wait' or name == 'scheduled' or name == 'meta' or name == 'events' or name == 'marker'
      or name == 'active' or name == 'completed' or name == 'failed' or name == 'cancelled'
      or name == 'waiting_children' then
    v = q.base .. name
  else
    error('queue_keys: no key named ' .. tostring(name))
  end
  q[name] = v
  return v
end }

local function queue_keys(base, maxlen, job_prefix)
  local q = QUEUE_KEYS[base]
  if q then return q end
  q = setmetatable({ base = base, job = job_prefix or (base .. 'job:'), maxlen = maxlen }, QUEUE_FIELDS)
  QUEUE_KEYS[base] = q
  return q
end

-- The queue of a job key prefix ("djj:{queue}:job:", what the entry points get in ARGV[1]).
local function queue_of_prefix(job_prefix, maxlen)
  return queue_keys(string.sub(job_prefix, 1, -5), maxlen, job_prefix)
end
