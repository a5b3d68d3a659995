-- Append one event to the queue's bounded events stream: trimmed at maxlen (EVENTS_MAXLEN),
-- or only at the mirror's cap while a database mirror follows the queue (includes/mirror).
--
-- Batched events (docs/architecture.md#the-events-stream): a script that moves many jobs per call
-- (enqueue, fetch, settle) calls emit_batch() first and emit_flush() before it returns. In
-- between, emit() collects the events per stream, event and field names, and emit_flush()
-- writes one entry per group (of at most EMIT_MAX_JOBS jobs): 'e' the event, 'js' a JSON list of the job ids and, for each
-- other field, a JSON list of its values (one per job, in the same order). A group of one job
-- is written as a single-job entry ('e', 'j', fields), the format every reader knows. Readers
-- expand a batch entry into one event per job (engine/streams.py, expand_entry). A job's own
-- events keep their order: an event for a job already collected flushes the collected ones first.
--@include mirror
local EMIT = { on = false }
-- The most jobs one entry names. EVENTS_MAXLEN and the mirror's cap count entries: a batch
-- entry holds up to this many events, so this bounds how much more the capped stream may hold
-- (docs/architecture.md#the-events-stream).
local EMIT_MAX_JOBS = 32

local function emit_write(events_key, maxlen, ...)
  if EMIT.untrimmed then
    -- This call's entries skip the trim (emit_untrimmed_call): no MAXLEN, no read of the mirror's hold.
    redis.call('XADD', events_key, '*', ...)
    return
  end
  local cap = mirror_cap(string.sub(events_key, 1, -7))
  if cap and cap > maxlen then maxlen = cap end
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', ...)
end

-- Write the collected events (one entry per group) and start collecting again.
local function emit_flush()
  if not EMIT.on then return end
  for i = 1, #EMIT.order do
    local g = EMIT.order[i]
    local args
    if #g.ids == 1 then
      args = { 'e', g.event, 'j', g.ids[1] }
      for f = 1, #g.names do
        args[#args + 1] = g.names[f]
        args[#args + 1] = g.values[f][1]
      end
    else
      args = { 'e', g.event, 'js', cjson.encode(g.ids) }
      for f = 1, #g.names do
        args[#args + 1] = g.names[f]
        args[#args + 1] = cjson.encode(g.values[f])
      end
    end
    emit_write(g.key, g.maxlen, unpack(args))
  end
  EMIT.streams, EMIT.order = {}, {}
end

-- Collect this script call's events until emit_flush() (which the caller must reach).
local function emit_batch()
  EMIT.on, EMIT.streams, EMIT.order, EMIT.untrimmed = true, {}, {}, false
end

-- A field value as XADD stores it (a Lua number becomes an integer).
local function emit_value(v)
  if type(v) == 'number' then return string.format('%d', v) end
  return v
end

local function emit(events_key, maxlen, event, job_id, ...)
  if not EMIT.on then
    local cap = mirror_cap(string.sub(events_key, 1, -7))
    if cap and cap > maxlen then maxlen = cap end
    redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'e', event, 'j', job_id, ...)
    return
  end
  local s = EMIT.streams[events_key]
  if not s then
    s = { jobs = {}, groups = {} }
    EMIT.streams[events_key] = s
  elseif s.jobs[job_id] then
    -- This job has an event collected already: write those first, so its events keep their order.
    emit_flush()
    return emit(events_key, maxlen, event, job_id, ...)
  end
  s.jobs[job_id] = true
  local nargs = select('#', ...)
  local gk = event
  local extra
  if nargs > 0 then
    extra = { ... }
    for f = 1, nargs, 2 do gk = gk .. '\n' .. extra[f] end
  end
  local g = s.groups[gk]
  if not g then
    g = { key = events_key, maxlen = maxlen, event = event, ids = {}, names = {}, values = {} }
    for f = 1, nargs, 2 do
      g.names[#g.names + 1] = extra[f]
      g.values[#g.values + 1] = {}
    end
    s.groups[gk] = g
    EMIT.order[#EMIT.order + 1] = g
  end
  g.ids[#g.ids + 1] = job_id
  for f = 1, #g.names do
    local list = g.values[f]
    list[#list + 1] = emit_value(extra[2 * f])
  end
  -- A full entry: write everything collected (all groups, so every job's events keep their order).
  if #g.ids >= EMIT_MAX_JOBS then emit_flush() end
end

-- One event of a lone job, untrimmed unless trim: XADD without MAXLEN, so no read of the mirror's
-- hold (includes/mirror) either. For the single enqueue, which trims on one call in
-- EMIT_TRIM_EVERY (its wait sequence number picks it): the stream then outgrows its cap by at
-- most that many entries between trims (on top of MAXLEN ~'s slack of a stream node), and a
-- skipped trim keeps events, never loses one. Batched calls (emit_batch) collect as emit() does.
local EMIT_TRIM_EVERY = 32
local function emit_untrimmed(events_key, maxlen, trim, event, job_id)
  if trim or EMIT.on then return emit(events_key, maxlen, event, job_id) end
  redis.call('XADD', events_key, '*', 'e', event, 'j', job_id)
end

-- A batched call (emit_batch) whose work is numbered by a counter that only grows (fetch: the
-- lease tokens it drew, first + 1 .. last) trims the stream only when that range crosses a
-- multiple of EMIT_TRIM_EVERY: consecutive calls draw consecutive ranges, so one call in every
-- EMIT_TRIM_EVERY numbers trims, the others XADD without MAXLEN and skip the mirror's hold
-- (one GET). Call it before the first flush that may skip; entries flushed before it (a full
-- group) were trimmed. The same bound as emit_untrimmed: a skipped trim keeps events.
local function emit_untrimmed_call(first, last)
  EMIT.untrimmed = math.floor(last / EMIT_TRIM_EVERY) == math.floor(first / EMIT_TRIM_EVERY)
end
