-- One job of a flow enqueue, from its group of 12 ARGV values starting at i (the layout of
-- flow_enqueue.lua): the fields job_store takes. Shared by flow_enqueue and flow_enqueue_part.
--@include job_store
local function flow_job(i, now_ms)
  local j = { id = ARGV[i + 1], d = ARGV[i + 2], p = ARGV[i + 3], due = job_due(now_ms, ARGV[i + 4], ARGV[i + 5]),
              cid = ARGV[i + 6], par = ARGV[i + 7], fk = ARGV[i + 10] }
  if ARGV[i + 8] ~= '' then
    j.pb = ARGV[i + 8]
    if ARGV[i + 9] ~= '' then j.fp = ARGV[i + 9] end
  end
  if ARGV[i + 11] ~= '' then j.kids = ARGV[i + 11] end
  return j
end

-- Mark the queue as one with flows (once per call: marked is the call's set of bases).
local function mark_flows(q, marked)
  if not marked[q.base] then
    marked[q.base] = true
    redis.call('HSET', q.meta, 'flows', 1)
  end
end
