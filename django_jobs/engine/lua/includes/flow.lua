-- Flows (docs/flows.md): what happens to a flow's tree when one of its jobs ends or starts over.
-- Flow fields of a job hash: 'pb' the parent's queue key base ("djj:{queue}:"), 'par' the
-- parent id, 'fp' the failure policy toward the parent ('' fail it | 'i' ignore | 'r' remove
-- the dependency), 'fk' keep ms when a flow step fails or cancels the job; a parent also has
-- 'kids' (JSON [[base, id, queue, name], ...]), 'pend' (children not yet ended) and one
-- 'c:<child id>' per ended child (JSON {"s": state, "r": return value}, "f": 1 when that end
-- failed the parent under the default policy). Re-opening across slots (a retry, below) adds
-- 'rg' to a parent (how often it re-opened its children on other slots), 'g:<child id>' (the
-- 'rg' a child on another slot must answer with) and 'pgen' to such a child (the 'rg' it
-- answers with: its outbox entries toward the parent carry it as 'pg').
-- Keys of other queues are built from those stored bases (includes/queue.lua), so on one
-- Redis server a flow step touches several queues' keys in place. A job with 'xs' = 1 (a flow
-- over several queues on a Redis Cluster, written by flow_enqueue_part.lua) never touches a
-- job of another queue: it records the step in its own queue's outbox (flow_outbox_put), and
-- the relay applies it there with flow_deliver.lua (docs/flows.md#redis-cluster).
--@include job_state
--@include wake
--@include append_json

local FLOW_PENDING = { waiting = true, scheduled = true, waiting_children = true }

-- The queue key base of a job key (base .. 'job:' .. id).
local function flow_base(job_key, job_id)
  return string.sub(job_key, 1, #job_key - #job_id - 4)
end

-- Record a flow step for a job on another slot in the outbox of queue base (this script's
-- slot): HASH base..'outbox' member -> entry JSON (with a new 'seq'), ZSET base..'outbox_due'
-- member -> due ms. member: 'd|<parent id>|<child id>' (a child ended: entry k = 'd'),
-- 'x|<child id>' (cancel a child: k = 'x'; or re-open it, its parent re-opened: k = 'o'), or
-- 'r|<parent id>|<child id>' (the child that failed the parent was retried: re-open the parent,
-- k = 'r'); a newer step of the same member replaces it (a re-open replaces a cancel not yet
-- delivered).
local function flow_outbox_put(base, member, entry, now_ms)
  entry.seq = redis.call('INCR', base .. 'outbox_seq')
  redis.call('HSET', base .. 'outbox', member, cjson.encode(entry))
  redis.call('ZADD', base .. 'outbox_due', now_ms, member)
end

-- Cancel one unfinished child kid_id of queue kq of a parent that will not run: a waiting,
-- scheduled or waiting_children one at once (why = parent_ended, with its unique and limit
-- bookkeeping; a waiting_children one is pushed on stack: its children are next), a running
-- one by a cancel request. Returns true when it changed something.
local function flow_cancel_kid(kq, kid_id, now_ms, maxlen, stack)
  local kid_key = kq.job .. kid_id
  local f = redis.call('HMGET', kid_key, 's', 'fk', 'cx', 'uk', 'lk')
  if FLOW_PENDING[f[1] or ''] then
    job_unpend(kq, kid_id, f[1], f[5])
    job_ended(kq, kid_key, kid_id, 'cancelled', now_ms, tonumber(f[2]) or 0, 'parent_ended')
    unique_release(kid_id, f[4])
    if f[1] == 'waiting_children' then stack[#stack + 1] = { kid_key, kid_id } end
    return true
  elseif f[1] == 'active' and f[3] ~= '1' then
    redis.call('HSET', kid_key, 'cx', '1')
    emit(kq.events, maxlen, 'cancel_requested', kid_id)
    return true
  end
  return false
end

-- Cancel the unfinished descendants of the parents on stack ({ job key, id } each): children
-- in their slot at once (flow_cancel_kid), children on another slot ('xs') by an outbox entry.
local function flow_cancel_walk(stack, now_ms, maxlen)
  while #stack > 0 do
    local top = table.remove(stack)
    local g = redis.call('HMGET', top[1], 'kids', 'xs')
    if g[1] then
      local base = flow_base(top[1], top[2])
      for _, kid in ipairs(cjson.decode(g[1])) do
        if g[2] == '1' and kid[1] ~= base then
          flow_outbox_put(base, 'x|' .. kid[2], { k = 'x', b = kid[1], id = kid[2] }, now_ms)
        else
          flow_cancel_kid(queue_keys(kid[1], maxlen), kid[2], now_ms, maxlen, stack)
        end
      end
    end
  end
end

-- Cancel the unfinished descendants of a parent that will not run (job_key, its id job_id).
local function flow_cancel_children(job_key, job_id, now_ms, maxlen)
  flow_cancel_walk({ { job_key, job_id } }, now_ms, maxlen)
end

-- Apply the end of child id (state st; r its return value JSON when completed, or nil: then
-- read from its hash kid_key; policy its 'fp') to its parent par of queue pq: record it in 'c:<id>', and move the parent to waiting
-- when its last child has ended, or fail it (why = child_failed) under the default policy (the
-- failed parent is appended to work, for flow_walk). Idempotent: an end already recorded in
-- the parent, or a parent no longer in waiting_children, changes nothing (returns false).
local function flow_apply(pq, par, id, st, r, kid_key, policy, now_ms, maxlen, work)
  local pkey = pq.job .. par
  local field = 'c:' .. id
  if redis.call('HGET', pkey, 's') ~= 'waiting_children' or redis.call('HEXISTS', pkey, field) == 1 then
    return false
  end
  local parent_failed = false
  if st == 'completed' then
    if not r and kid_key then r = redis.call('HGET', kid_key, 'r') end
    redis.call('HSET', pkey, field, '{"s":"completed","r":' .. (r or 'null') .. '}')
  elseif policy == 'i' then
    redis.call('HSET', pkey, field, '{"s":"' .. st .. '"}')
  elseif policy == 'r' then
    redis.call('HSET', pkey, field, '{"s":"removed"}')
  else
    parent_failed = true
    redis.call('HSET', pkey, field, '{"s":"' .. st .. '","f":1}')
    append_json(pkey, 'err', cjson.encode({
      exception_class_path = 'django_jobs.exceptions.ChildFailed',
      traceback = 'Child job ' .. id .. ' ended ' .. st .. ' and its failure policy fails the parent.',
    }))
    redis.call('ZREM', pq.waiting_children, par)
    job_ended(pq, pkey, par, 'failed', now_ms, tonumber(redis.call('HGET', pkey, 'fk')) or 0, 'child_failed')
    unique_release(par, redis.call('HGET', pkey, 'uk'))
    work[#work + 1] = { pkey, par, 'failed' }
  end
  if not parent_failed and redis.call('HINCRBY', pkey, 'pend', -1) <= 0 then
    local score = next_wait_score(pq.meta, redis.call('HGET', pkey, 'p') or 0)
    redis.call('ZREM', pq.waiting_children, par)
    redis.call('ZADD', pq.wait, score, par)
    redis.call('HSET', pkey, 's', 'waiting', 'ws', score)
    emit(pq.events, maxlen, 'waiting', par)
    wake(pq.marker)
  end
  return true
end

-- The ended flow jobs on work ({ job key, id, state } each) apply their end up and down the
-- tree: one that did not complete cancels its unfinished children; each applies its end to
-- its parent (flow_apply), in place, or by an outbox entry when the parent is on another slot.
local function flow_walk(work, now_ms, maxlen)
  while #work > 0 do
    local item = table.remove(work)
    local key, id, st = item[1], item[2], item[3]
    local g = redis.call('HMGET', key, 'pb', 'par', 'fp', 'kids', 'xs', 'pgen')
    if st ~= 'completed' and g[4] then
      -- A parent that ended without running (cancelled, or failed by a child) leaves its set.
      redis.call('ZREM', flow_base(key, id) .. 'waiting_children', id) -- its own queue
      flow_cancel_children(key, id, now_ms, maxlen)
    end
    local pb, par = g[1], g[2]
    if pb and par and par ~= '' then
      local base = flow_base(key, id)
      if g[5] == '1' and pb ~= base then
        local r = nil
        if st == 'completed' then r = redis.call('HGET', key, 'r') or 'null' end
        flow_outbox_put(base, 'd|' .. par .. '|' .. id,
                        { k = 'd', b = pb, par = par, id = id, s = st, r = r, fp = g[3] or '', pg = g[6] }, now_ms)
      else
        flow_apply(queue_keys(pb, maxlen), par, id, st, nil, key, g[3] or '', now_ms, maxlen, work)
      end
    end
  end
end

-- Call after a job ended (completed, failed, cancelled): when it belongs to a flow, cancel its
-- unfinished children (if it did not complete) and apply its end to its parent, and so on up
-- the tree (flow_walk). A queue that never held a flow job (no 'flows' field in its meta
-- hash, set by flow_enqueue) costs one HEXISTS per script call (none where the caller read the
-- field itself: flows_read); others one HMGET per job.
local FLOW_QUEUES = {} -- queue key base -> whether flow jobs may live there (per script call)
local function flows_on(base)
  local on = FLOW_QUEUES[base]
  if on == nil then
    on = redis.call('HEXISTS', base .. 'meta', 'flows') == 1
    FLOW_QUEUES[base] = on
  end
  return on
end

-- What a caller read of base's meta 'flows' itself (HMGET, with other fields: one command
-- fewer than flows_on's HEXISTS): its value, or false when missing.
local function flows_read(base, value)
  FLOW_QUEUES[base] = value and true or false
end

local function flow_done(job_key, job_id, now_ms, maxlen)
  if not flows_on(flow_base(job_key, job_id)) then return end
  local head = redis.call('HMGET', job_key, 's', 'pb', 'kids')
  if not (head[2] or head[3]) then return end
  local state = head[1]
  if state ~= 'completed' and state ~= 'failed' and state ~= 'cancelled' then return end
  flow_walk({ { job_key, job_id, state } }, now_ms, maxlen)
end

-- Whether the parent's record rec of a child (its 'c:<id>' JSON, decoded) says that child failed
-- it: "f" (written by flow_apply), or, in a record written before "f" existed, an end failed or
-- cancelled under the default policy (the child's 'fp', read from kid_key when the child is in
-- this slot; nil: a child on another slot, whose records always have "f").
local function flow_rec_failed(rec, kid_key)
  if rec.s ~= 'failed' and rec.s ~= 'cancelled' then return false end
  if rec.f then return true end
  if not kid_key then return false end
  local fp = redis.call('HGET', kid_key, 'fp')
  return fp ~= 'i' and fp ~= 'r'
end

-- Whether the ended child kid_id failed its parent pkey: the parent failed through a child
-- (why = child_failed) and its record of this child says so (flow_rec_failed; kid_key the
-- child's hash when in this slot, else nil). Reads the parent's hash only.
local function flow_failed_through(pkey, kid_key, kid_id)
  local p = redis.call('HMGET', pkey, 's', 'why', 'c:' .. kid_id)
  if p[1] ~= 'failed' or p[2] ~= 'child_failed' or not p[3] then return false end
  return flow_rec_failed(cjson.decode(p[3]), kid_key)
end

-- Whether child kid ({ base, id, ... } of 'kids') of parent job_key (queue base) is on another
-- slot: only a job of a cluster flow over several queues ('xs' = 1) has such children.
local function flow_kid_away(job_key, base, kid)
  return kid[1] ~= base and redis.call('HGET', job_key, 'xs') == '1'
end

-- The children that failed parent job_key (recorded failed or cancelled under the default
-- policy, flow_rec_failed): a list of { base, id }. Reads the parent's slot only.
local function flow_failing_children(job_key, job_id)
  local out = {}
  local base = flow_base(job_key, job_id)
  for _, kid in ipairs(cjson.decode(redis.call('HGET', job_key, 'kids') or '[]')) do
    local rec = redis.call('HGET', job_key, 'c:' .. kid[2])
    if rec then
      local kid_key = nil
      if not flow_kid_away(job_key, base, kid) then kid_key = kid[1] .. 'job:' .. kid[2] end
      if flow_rec_failed(cjson.decode(rec), kid_key) then out[#out + 1] = { kid[1], kid[2] } end
    end
  end
  return out
end

-- Re-open a flow parent that ended while it waited for its children (failed through a child,
-- or cancelled): back to waiting_children (event waiting_children, why = retried), its earlier
-- errors kept ('eh'). Each child it has not recorded counts in 'pend' again: an ended one
-- (cancelled with it, or failed) starts over too (a parent among them is re-opened the same
-- way); a running one loses the cancel request its parent's end made; a completed one is
-- recorded now; a missing one is recorded as removed. With up, a grandparent that failed
-- through this parent is re-opened as well. done: the jobs restarted by this call (key -> true).
-- On a cluster (docs/flows.md#redis-cluster) a child on another slot gets the same rule by an
-- outbox entry (k = 'o', flow_reopen_kid in its slot), and a grandparent on another slot by a
-- 'r' entry (flow_reopen_parent in its slot); from (a child id, or nil) is the child whose
-- retry re-opens this parent: it already started over, so it gets no 'o' entry.
local flow_reopen
local function flow_revive(kq, kid_key, kid_id, state, now_ms, done)
  if done[kid_key] then return end
  local pend = tonumber(redis.call('HGET', kid_key, 'pend')) or 0
  if pend > 0 then
    flow_reopen(kq, kid_key, kid_id, state, now_ms, done, false)
  else
    job_restart(kq, kid_key, kid_id, state)
    job_restart_waiting(kq, kid_key, kid_id)
    wake(kq.marker)
    done[kid_key] = true
  end
end

-- A retried child on another slot re-opens parent par of queue pq (a 'r' outbox entry, its
-- slot): only if the parent failed through it (flow_failed_through on the parent's record).
-- Returns whether it re-opened it.
local function flow_reopen_parent(pq, par, kid_id, now_ms)
  local pkey = pq.job .. par
  if not flow_failed_through(pkey, nil, kid_id) then return false end
  flow_reopen(pq, pkey, par, 'failed', now_ms, {}, true, kid_id)
  return true
end

-- Tell the parent of child kid (e: the 'o' entry, whose b is the child's queue) how it ended,
-- by an outbox entry in the child's slot: the parent's record is what the in-place re-open
-- writes (completed with its result, or removed when the child is gone).
local function flow_answer(q, e, st, r, fp, now_ms)
  flow_outbox_put(q.base, 'd|' .. e.par .. '|' .. e.id,
                  { k = 'd', b = e.pb, par = e.par, id = e.id, s = st, r = r, fp = fp, pg = tostring(e.gen) }, now_ms)
end

-- A parent on another slot re-opened (an 'o' outbox entry e, in the child's slot): apply the
-- re-open's rule to child e.id of queue q as flow_reopen does in place: an ended one (failed,
-- cancelled) starts over (flow_revive), a running one loses its cancel request, a completed one
-- (or a missing one: removed) sends its end again; from now on its ends carry the parent's
-- generation e.gen (its 'pgen'), and the parent ignores an end that carries an older one (an
-- end sent before this re-open reached it). Idempotent: a child that already answers to e.gen
-- changes nothing. Returns whether it changed something.
local function flow_reopen_kid(q, e, now_ms)
  local kid_key = q.job .. e.id
  local g = redis.call('HMGET', kid_key, 's', 'pgen', 'r', 'fp')
  local gen = tostring(e.gen)
  if not g[1] then
    flow_answer(q, e, 'removed', nil, 'r', now_ms)
    return true
  end
  if g[2] == gen then return false end
  redis.call('HSET', kid_key, 'pgen', gen)
  if g[1] == 'completed' then
    flow_answer(q, e, 'completed', g[3] or 'null', g[4] or '', now_ms)
  elseif g[1] == 'failed' or g[1] == 'cancelled' then
    flow_revive(q, kid_key, e.id, g[1], now_ms, {})
  elseif g[1] == 'active' then
    redis.call('HDEL', kid_key, 'cx')
  end
  return true
end

flow_reopen = function(q, job_key, job_id, state, now_ms, done, up, from)
  done[job_key] = true
  -- The children that failed it are no longer recorded as ended: they count in 'pend' again.
  for _, kid in ipairs(flow_failing_children(job_key, job_id)) do redis.call('HDEL', job_key, 'c:' .. kid[2]) end
  local pend = 0
  local gen = nil
  for _, kid in ipairs(cjson.decode(redis.call('HGET', job_key, 'kids') or '[]')) do
    local kq, kid_id = queue_keys(kid[1], q.maxlen), kid[2]
    local field = 'c:' .. kid_id
    if redis.call('HEXISTS', job_key, field) == 0 then
      local kid_key = kq.job .. kid_id
      if flow_kid_away(job_key, q.base, kid) then
        pend = pend + 1
        if kid_id == from then
          redis.call('HDEL', job_key, 'g:' .. kid_id)
        else
          gen = gen or redis.call('HINCRBY', job_key, 'rg', 1)
          redis.call('HSET', job_key, 'g:' .. kid_id, gen)
          flow_outbox_put(q.base, 'x|' .. kid_id,
                          { k = 'o', b = kid[1], id = kid_id, pb = q.base, par = job_id, gen = gen }, now_ms)
        end
      else
        local g = redis.call('HMGET', kid_key, 's', 'r')
        if not g[1] then
          redis.call('HSET', job_key, field, '{"s":"removed"}')
        elseif g[1] == 'completed' then
          redis.call('HSET', job_key, field, '{"s":"completed","r":' .. (g[2] or 'null') .. '}')
        else
          pend = pend + 1
          if g[1] == 'failed' or g[1] == 'cancelled' then
            flow_revive(kq, kid_key, kid_id, g[1], now_ms, done)
          elseif g[1] == 'active' then
            redis.call('HDEL', kid_key, 'cx')
          end
        end
      end
    end
  end
  job_restart(q, job_key, job_id, state)
  if pend > 0 then
    redis.call('HSET', job_key, 's', 'waiting_children', 'a', 0, 'pend', pend)
    redis.call('ZADD', q.waiting_children, now_ms, job_id)
    emit(q.events, q.maxlen, 'waiting_children', job_id, 'why', 'retried')
  else
    redis.call('HSET', job_key, 'pend', 0)
    job_restart_waiting(q, job_key, job_id)
    wake(q.marker)
  end
  if up then
    local g = redis.call('HMGET', job_key, 'pb', 'par', 'xs')
    if g[1] and g[2] and g[2] ~= '' then
      if g[3] == '1' and g[1] ~= q.base then
        flow_outbox_put(q.base, 'r|' .. g[2] .. '|' .. job_id, { k = 'r', b = g[1], par = g[2], id = job_id }, now_ms)
      else
        local pq = queue_keys(g[1], q.maxlen)
        local pkey = pq.job .. g[2]
        if not done[pkey] and flow_failed_through(pkey, job_key, job_id) then
          flow_reopen(pq, pkey, g[2], 'failed', now_ms, done, true)
        end
      end
    end
  end
end
