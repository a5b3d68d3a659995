-- The store transition: create one job, for enqueue.lua, enqueue_guarded.lua and
-- flow_enqueue.lua. The whole job hash is written here (docs/architecture.md, "Fields of a job
-- hash"), with its unique lock and its flow fields, so no entry point writes it its own way.
--@include queue
--@include emit
--@include wait_score

-- The enqueue time 'e' (ms) job_key's hash holds; 0 when it has none (no such job).
local function stored_enqueued_ms(job_key)
  return tonumber(redis.call('HGET', job_key, 'e')) or 0
end

-- When a job is due: the later of now + delay_ms and run_at (ms).
local function job_due(now_ms, run_at, delay_ms)
  local due = now_ms + tonumber(delay_ms)
  run_at = tonumber(run_at)
  if run_at > due then due = run_at end
  return due
end

-- Wait scores drawn for a batch of jobs from one read of meta 'seq' (one write at flush()),
-- instead of one HINCRBY per job. Use it only where nothing else draws scores of q meanwhile.
local function wait_score_batch(meta_key)
  local b = {}
  function b.draw(priority)
    if not b.seq then b.seq = tonumber(redis.call('HGET', meta_key, 'seq')) or 0 end
    b.seq = b.seq + 1
    return (100 - tonumber(priority)) * PRIORITY_SPAN + b.seq
  end
  function b.flush()
    if b.seq then redis.call('HSET', meta_key, 'seq', b.seq) end
  end
  return b
end

-- Create job j.id on queue q (includes/queue.lua) at now_ms. j holds: d (payload JSON), p
-- (priority), due (ms; later than now_ms: scheduled), cid, par; a limit key: lk (its base
-- name), lc, lr, lp; a unique key: lock (its lock STRING), ug (until), window_ms (0: the lock is
-- released when the job ends, 'uk'; else it lives that long); a flow: pb (parent's base), fp,
-- fk, kids (JSON: a parent, which waits in waiting_children with pend = its number of children).
-- EXISTS is the existence check: a replayed or duplicate id writes nothing. The hash is written by
-- one HSET; a field at its default is left out ('a' 0 attempts, an empty 'cid' or 'par': every
-- reader takes a missing one as that default, record.py and the Lua HMGETs alike).
-- 'p' at 0 and 'ws' are written unless j.lean (LEAN_JOB_HASH, enqueue.lua only), for the workers
-- of release 0.1.0 during a rolling update: their promotion drops a scheduled job without 'p', and
-- their claim does not write 'ws' (a release would lose the job's place in line). Every reader of
-- this release takes a missing 'p' as 0 and the claim writes 'ws' (includes/mark_active,
-- includes/promote), so with j.lean a waiting job's hash leaves both out (-16 bytes per job:
-- docs/performance.md); a scheduled job's leaves out 'p' at 0 (it has no 'ws').
-- scores: a wait_score_batch or nil (one HINCRBY); zadd: a list collecting score, id for one
-- ZADD of wait by the caller, or nil.
-- Returns two values: the code, 0 the id exists | 1 waiting | 2 scheduled | 5 waiting_children
-- (a flow parent); and the job's enqueue time 'e' (ms): now_ms, or the one its hash holds when
-- the id exists (a replay returns what the first call stored; 0 if the hash has none).
local function job_store(q, j, now_ms, scores, zadd)
  local job_id = j.id
  local job_key = q.job .. job_id
  if redis.call('EXISTS', job_key) == 1 then return 0, stored_enqueued_ms(job_key) end
  local lean = j.lean
  local h
  if lean and tonumber(j.p) == 0 then h = { 'd', j.d, 'e', now_ms } else h = { 'd', j.d, 'p', j.p, 'e', now_ms } end
  if j.cid ~= '' then h[#h + 1] = 'cid'; h[#h + 1] = j.cid end
  if j.par ~= '' then h[#h + 1] = 'par'; h[#h + 1] = j.par end
  if j.lk then
    h[#h + 1] = 'lk'; h[#h + 1] = j.lk; h[#h + 1] = 'lc'; h[#h + 1] = j.lc
    h[#h + 1] = 'lr'; h[#h + 1] = j.lr; h[#h + 1] = 'lp'; h[#h + 1] = j.lp
  end
  if j.lock then
    h[#h + 1] = 'ug'; h[#h + 1] = j.ug
    if j.window_ms > 0 then
      redis.call('SET', j.lock, job_id, 'PX', j.window_ms)
    else
      -- Released when the job ends (includes/unique_release), if it still holds it.
      redis.call('SET', j.lock, job_id)
      h[#h + 1] = 'uk'; h[#h + 1] = j.lock
    end
  end
  if j.fk then
    h[#h + 1] = 'fk'; h[#h + 1] = j.fk
    if j.pb then
      h[#h + 1] = 'pb'; h[#h + 1] = j.pb
      if j.fp then h[#h + 1] = 'fp'; h[#h + 1] = j.fp end
    end
  end
  local code
  if j.kids then
    h[#h + 1] = 'kids'; h[#h + 1] = j.kids; h[#h + 1] = 'pend'; h[#h + 1] = #cjson.decode(j.kids)
    h[#h + 1] = 's'; h[#h + 1] = 'waiting_children'
    redis.call('ZADD', q.waiting_children, now_ms, job_id)
    emit(q.events, q.maxlen, 'waiting_children', job_id)
    code = 5
  elseif j.due > now_ms then
    h[#h + 1] = 's'; h[#h + 1] = 'scheduled'; h[#h + 1] = 'run'; h[#h + 1] = j.due
    redis.call('ZADD', q.scheduled, j.due, job_id)
    emit(q.events, q.maxlen, 'scheduled', job_id)
    code = 2
  else
    local score = scores and scores.draw(j.p) or next_wait_score(q.meta, j.p)
    h[#h + 1] = 's'; h[#h + 1] = 'waiting'
    if not lean then h[#h + 1] = 'ws'; h[#h + 1] = score end
    if zadd then
      zadd[#zadd + 1] = score
      zadd[#zadd + 1] = job_id
    else
      redis.call('ZADD', q.wait, score, job_id)
    end
    -- Trims the events stream on every EMIT_TRIM_EVERY-th sequence number (includes/emit):
    -- score modulo 2^44 is the queue's seq.
    emit_untrimmed(q.events, q.maxlen, score % EMIT_TRIM_EVERY == 0, 'waiting', job_id)
    code = 1
  end
  redis.call('HSET', job_key, unpack(h))
  return code, now_ms
end
