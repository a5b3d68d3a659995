-- Flows (docs/flows.md): what happens to a flow's tree when one of its jobs ends.
-- Flow fields of a job hash: 'pb' the parent's queue key base ("djj:{queue}:"), 'par' the
-- parent id, 'fp' the failure policy toward the parent ('' fail it | 'i' ignore | 'r' remove
-- the dependency), 'fk' keep ms when a flow step fails or cancels the job; a parent also has
-- 'kids' (JSON [[base, id, queue, name], ...]), 'pend' (children not yet ended) and one
-- 'c:<child id>' per ended child (JSON {"s": state, "r": return value}).
-- Keys of other queues are built from those stored bases: base .. 'job:' .. id, base .. 'wait',
-- ... (the layout of engine/keys.py). So a flow step may touch several queues' keys: flows
-- need a single Redis server, not Cluster (docs/flows.md#redis-cluster).
--@include wait_score
--@include emit
--@include wake
--@include append_json

local FLOW_PENDING_SET = { waiting = 'wait', scheduled = 'scheduled', waiting_children = 'waiting_children' }

-- Cancel the unfinished descendants of a parent that will not run: waiting, scheduled and
-- waiting_children ones at once (why = parent_ended), running ones by a cancel request.
local function flow_cancel_children(job_key, now_ms, maxlen)
  local stack = { job_key }
  while #stack > 0 do
    local kids = redis.call('HGET', table.remove(stack), 'kids')
    if kids then
      for _, kid in ipairs(cjson.decode(kids)) do
        local base, kid_id = kid[1], kid[2]
        local kid_key = base .. 'job:' .. kid_id
        local f = redis.call('HMGET', kid_key, 's', 'fk', 'cx')
        local set = FLOW_PENDING_SET[f[1] or '']
        if set then
          redis.call('ZREM', base .. set, kid_id)
          redis.call('HSET', kid_key, 's', 'cancelled', 'f', now_ms, 'why', 'parent_ended')
          redis.call('ZADD', base .. 'cancelled', now_ms + (tonumber(f[2]) or 0), kid_id)
          emit(base .. 'events', maxlen, 'cancelled', kid_id, 'why', 'parent_ended')
          if f[1] == 'waiting_children' then stack[#stack + 1] = kid_key end
        elseif f[1] == 'active' and f[3] ~= '1' then
          redis.call('HSET', kid_key, 'cx', '1')
          emit(base .. 'events', maxlen, 'cancel_requested', kid_id)
        end
      end
    end
  end
end

-- Call after any transition of a job: when the job has ended (completed, failed, cancelled)
-- and belongs to a flow, cancel its unfinished children (if it did not complete) and apply
-- its end to its parent: record it in 'c:<id>', and move the parent to waiting when its last
-- child has ended, or fail it (why = child_failed) under the default policy, and so on up the
-- tree. Idempotent: an end already recorded in the parent, or a parent no longer in
-- waiting_children, changes nothing. A queue that never held a flow job (no 'flows' field in
-- its meta hash, set by flow_enqueue) costs one HEXISTS per script call; others one HMGET per job.
local FLOW_QUEUES = {} -- queue key base -> whether flow jobs may live there (per script call)
local function flow_done(job_key, job_id, now_ms, maxlen)
  local base = string.sub(job_key, 1, #job_key - #job_id - 4) -- job_key is base .. 'job:' .. id
  local on = FLOW_QUEUES[base]
  if on == nil then
    on = redis.call('HEXISTS', base .. 'meta', 'flows') == 1
    FLOW_QUEUES[base] = on
  end
  if not on then return end
  local head = redis.call('HMGET', job_key, 's', 'pb', 'kids')
  if not (head[2] or head[3]) then return end
  local state = head[1]
  if state ~= 'completed' and state ~= 'failed' and state ~= 'cancelled' then return end
  local work = { { job_key, job_id, state } }
  while #work > 0 do
    local item = table.remove(work)
    local key, id, st = item[1], item[2], item[3]
    local g = redis.call('HMGET', key, 'pb', 'par', 'fp', 'kids')
    if st ~= 'completed' and g[4] then
      -- A parent that ended without running (cancelled, or failed by a child) leaves its set.
      redis.call('ZREM', string.sub(key, 1, #key - #id - 4) .. 'waiting_children', id) -- its own queue
      flow_cancel_children(key, now_ms, maxlen)
    end
    local pb, par = g[1], g[2]
    if pb and par and par ~= '' then
      local pkey = pb .. 'job:' .. par
      local field = 'c:' .. id
      if redis.call('HGET', pkey, 's') == 'waiting_children' and redis.call('HEXISTS', pkey, field) == 0 then
        local policy = g[3] or ''
        local parent_failed = false
        if st == 'completed' then
          redis.call('HSET', pkey, field, '{"s":"completed","r":' .. (redis.call('HGET', key, 'r') or 'null') .. '}')
        elseif policy == 'i' then
          redis.call('HSET', pkey, field, '{"s":"' .. st .. '"}')
        elseif policy == 'r' then
          redis.call('HSET', pkey, field, '{"s":"removed"}')
        else
          parent_failed = true
          redis.call('HSET', pkey, field, '{"s":"' .. st .. '"}')
          append_json(pkey, 'err', cjson.encode({
            exception_class_path = 'django_jobs.exceptions.ChildFailed',
            traceback = 'Child job ' .. id .. ' ended ' .. st .. ' and its failure policy fails the parent.',
          }))
          redis.call('ZREM', pb .. 'waiting_children', par)
          redis.call('HSET', pkey, 's', 'failed', 'f', now_ms, 'why', 'child_failed')
          redis.call('ZADD', pb .. 'failed', now_ms + (tonumber(redis.call('HGET', pkey, 'fk')) or 0), par)
          emit(pb .. 'events', maxlen, 'failed', par, 'why', 'child_failed')
          work[#work + 1] = { pkey, par, 'failed' }
        end
        if not parent_failed and redis.call('HINCRBY', pkey, 'pend', -1) <= 0 then
          local score = next_wait_score(pb .. 'meta', redis.call('HGET', pkey, 'p') or 0)
          redis.call('ZREM', pb .. 'waiting_children', par)
          redis.call('ZADD', pb .. 'wait', score, par)
          redis.call('HSET', pkey, 's', 'waiting', 'ws', score)
          emit(pb .. 'events', maxlen, 'waiting', par)
          wake(pb .. 'marker')
        end
      end
    end
  end
end
