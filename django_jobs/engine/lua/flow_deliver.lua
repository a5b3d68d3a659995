--[[
  flow_deliver: apply one outbox entry of a flow over several queues on a Redis Cluster, in
  the slot of the job it is for (the relay calls it: engine/relay.py; docs/flows.md#redis-cluster).
  KEYS[1] the target job HASH (base .. 'job:' .. id): routes the call to its slot; the other
  keys are built from the entry's queue key base 'b' (same hash tag): base .. 'wait',
  'waiting_children', 'failed', 'cancelled', 'scheduled', 'meta', 'events', 'marker', 'outbox',
  'outbox_due', 'outbox_seq' (a step further on, e.g. a failed parent's own parent on a third
  slot, is recorded in this slot's outbox).
  ARGV[1] events maxlen  ARGV[2] the entry JSON (includes/flow.lua flow_outbox_put):
          k = 'd' child id ended in state s (result r, policy fp): apply it to parent par |
          k = 'x' cancel child id (its parent will not run)
  Idempotent: 'd' applies only while the parent waits for its children and has no 'c:<id>'
  field yet (includes/flow.lua flow_apply, the rule of the in-place step); 'x' only cancels a
  child still unfinished. A second delivery changes nothing.
  Returns: 1 applied | 0 nothing to do (already applied, or the target ended or is gone)
           | -4 BAD_REQUEST (unknown kind)
  Events:  as the in-place step: "waiting" / "failed" (why child_failed) of the parent,
           "cancelled" (why parent_ended) / "cancel_requested" of children
]]
--@include now
--@include flow
local maxlen = tonumber(ARGV[1])
local e = cjson.decode(ARGV[2])
local q = queue_keys(e.b, maxlen)
local now_ms = server_now_ms()
if e.k == 'd' then
  local r = e.r
  if r == cjson.null then r = nil end
  local work = {}
  if not flow_apply(q, e.par, e.id, e.s, r or 'null', nil, e.fp or '', now_ms, maxlen, work) then return 0 end
  flow_walk(work, now_ms, maxlen)
  return 1
elseif e.k == 'x' then
  local stack = {}
  if not flow_cancel_kid(q, e.id, now_ms, maxlen, stack) then return 0 end
  flow_cancel_walk(stack, now_ms, maxlen)
  return 1
end
return -4
