-- One job of a flow enqueue, from its group of 12 values of args starting at i (the layout of
-- flow_enqueue.lua; args is ARGV, or the 'a' list of a create entry, all strings): the fields
-- job_store takes. Shared by flow_enqueue and flow_part (flow_enqueue_part, flow_deliver).
--@include job_store
local function flow_job(args, i, now_ms)
  local j = { id = args[i + 1], d = args[i + 2], p = args[i + 3], due = job_due(now_ms, args[i + 4], args[i + 5]),
              cid = args[i + 6], par = args[i + 7], fk = args[i + 10] }
  if args[i + 8] ~= '' then
    j.pb = args[i + 8]
    if args[i + 9] ~= '' then j.fp = args[i + 9] end
  end
  if args[i + 11] ~= '' then j.kids = args[i + 11] end
  return j
end

-- Mark the queue as one with flows (once per call: marked is the call's set of bases).
local function mark_flows(q, marked)
  if not marked[q.base] then
    marked[q.base] = true
    redis.call('HSET', q.meta, 'flows', 1)
  end
end
