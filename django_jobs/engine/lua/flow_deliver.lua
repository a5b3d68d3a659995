--[[
  flow_deliver: apply one outbox entry of a flow over several queues on a Redis Cluster, in
  the slot of the job it is for (the relay calls it: engine/relay.py; docs/flows.md#redis-cluster).
  KEYS[1] the target job HASH (base .. 'job:' .. id): routes the call to its slot; the other
  keys are built from the entry's queue key base 'b' (same hash tag): base .. 'wait',
  'waiting_children', 'failed', 'cancelled', 'scheduled', 'meta', 'events', 'marker', 'outbox',
  'outbox_due', 'outbox_seq' (a step further on, e.g. a failed parent's own parent on a third
  slot, is recorded in this slot's outbox).
  For a create entry (k = 'c'), KEYS[1] is the hash of the part's first job; the part's jobs
  and its mark (base .. 'part:' .. fn .. ':' .. i, a STRING) are in that slot too.
  ARGV[1] events maxlen  ARGV[2] the entry JSON (includes/flow.lua flow_outbox_put):
          k = 'd' child id ended in state s (result r, policy fp): apply it to parent par |
          k = 'x' cancel child id (its parent will not run) |
          k = 'r' child id, which failed parent par, was retried: re-open the parent |
          k = 'o' parent par (queue base pb) re-opened as generation gen: re-open child id |
          k = 'c' write part i of flow fn (jobs a, enqueued at e: includes/flow_part.lua;
          recorded by flow_enqueue_part.lua in the root's slot)
  Idempotent: 'd' applies only while the parent waits for its children and has no 'c:<id>'
  field yet (includes/flow.lua flow_apply, the rule of the in-place step), and only when it
  carries the generation the parent waits for from that child ('g:<id>' = the entry's pg: an
  end sent before the parent re-opened is ignored, the 'o' entry asks for it again); 'x' only
  cancels a child still unfinished; 'r' re-opens only a parent that failed through that child
  (flow_reopen_parent: the retry rule of includes/job_retry.lua); 'o' applies once per
  generation (flow_reopen_kid); 'c' writes a part once: its mark says it was written (kept
  until the writer acknowledged the entry, so a job of it that ended and was deleted meanwhile
  is not written again), and a job that exists with the flow's nonce is skipped. A second
  delivery changes nothing.
  Returns: 1 applied | 0 nothing to do (already applied, or the target ended or is gone)
           | -4 BAD_REQUEST (unknown kind)
           | for 'c': {1, e} written (or written before) | {0, the 'e' of the job found}: a job
           of the part exists with another nonce (a reused id: nothing written)
  Events:  for 'c', "waiting_children", "waiting" or "scheduled" per job created; else as the in-place step: "waiting" / "failed" (why child_failed) of the parent,
           "cancelled" (why parent_ended) / "cancel_requested" of children, and for a retry
           "waiting_children" (why retried) of a re-opened parent, "waiting" (why retried) of a
           restarted child
]]
--@include now
--@include flow
--@include flow_part
local maxlen = tonumber(ARGV[1])
local e = cjson.decode(ARGV[2])
if e.k == 'c' then
  local mark = e.b .. 'part:' .. e.fn .. ':' .. e.i
  local enqueued_ms = tonumber(e.e)
  if redis.call('EXISTS', mark) == 1 then return { 1, enqueued_ms } end
  local code, found = flow_part(e.a, 1, maxlen, e.fn, enqueued_ms)
  if code == 0 then return { 0, found } end
  redis.call('SET', mark, 1, 'PX', FLOW_PART_MARK_MS)
  return { 1, enqueued_ms }
end
local q = queue_keys(e.b, maxlen)
local now_ms = server_now_ms()
if e.k == 'd' then
  local r = e.r
  if r == cjson.null then r = nil end
  local want = redis.call('HGET', q.job .. e.par, 'g:' .. e.id)
  if want and want ~= tostring(e.pg or '') then return 0 end -- sent before the parent re-opened
  local work = {}
  if not flow_apply(q, e.par, e.id, e.s, r or 'null', nil, e.fp or '', now_ms, maxlen, work) then return 0 end
  flow_walk(work, now_ms, maxlen)
  return 1
elseif e.k == 'x' then
  local stack = {}
  if not flow_cancel_kid(q, e.id, now_ms, maxlen, stack) then return 0 end
  flow_cancel_walk(stack, now_ms, maxlen)
  return 1
elseif e.k == 'r' then
  if not flow_reopen_parent(q, e.par, e.id, now_ms) then return 0 end
  return 1
elseif e.k == 'o' then
  if not flow_reopen_kid(q, e, now_ms) then return 0 end
  return 1
end
return -4
