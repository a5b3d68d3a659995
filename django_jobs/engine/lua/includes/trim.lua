-- Delete finished jobs past their keep-until score, then beyond the count limit.
-- The finished ZSETs are scored by the time a job may be deleted (finish + keep),
-- so a per-job retention override is just a different score. Bounded work per call
-- (limit: jobs per rule, TRIM_BATCH when nil). now_ms: the server time, or nil to read it
-- only when there is something to trim.
-- While a database mirror holds the queue (includes/mirror), only jobs it recorded are
-- deleted (its 'rec:' set), unless more than its cap of this set's jobs wait unrecorded: the
-- mirror is that far behind (or gone), and retention goes on as without it.
--@include now
--@include mirror
local TRIM_BATCH = 200
-- A finished set that a call added nothing to (completions kept for no time: settle.lua) holds
-- only jobs kept earlier; it is trimmed on one such call in TRIM_EVERY, not on each.
local TRIM_EVERY = 32

-- unpack() takes a few thousand values at most: long lists go in slices of this many.
local TRIM_SLICE = 2000

-- Delete the jobs ids of a finished set (their hashes: one DEL per slice, not per job).
local function trim_delete(set_key, rec_key, job_prefix, ids)
  if #ids == 0 then return end
  for first = 1, #ids, TRIM_SLICE do
    local last = math.min(first + TRIM_SLICE - 1, #ids)
    local keys = {}
    for i = first, last do keys[#keys + 1] = job_prefix .. ids[i] end
    redis.call('DEL', unpack(keys))
    redis.call('ZREM', set_key, unpack(ids, first, last))
    if rec_key then redis.call('ZREM', rec_key, unpack(ids, first, last)) end
  end
end

-- The scores in set_key of ids, as a flat list of score, id pairs (ZADD's arguments) of those
-- that are members: one ZMSCORE per slice instead of a ZSCORE per job.
local function set_scores(set_key, ids)
  local found = {}
  for first = 1, #ids, TRIM_SLICE do
    local last = math.min(first + TRIM_SLICE - 1, #ids)
    local scores = redis.call('ZMSCORE', set_key, unpack(ids, first, last))
    for i = first, last do
      local score = scores[i - first + 1]
      if score then
        found[#found + 1] = score
        found[#found + 1] = ids[i]
      end
    end
  end
  return found
end

local function trim_finished(set_key, job_prefix, now_ms, max_count, limit)
  limit = limit or TRIM_BATCH
  local base = string.sub(job_prefix, 1, -5)
  local cap = mirror_cap(base)
  if cap then
    now_ms = now_ms or server_now_ms()
    local rec_key = recorded_key(base, set_key)
    local unrecorded = redis.call('ZCARD', set_key) - redis.call('ZCARD', rec_key)
    if unrecorded <= cap then
      -- Only recorded jobs still in the set (a job retried since it was recorded is not: it
      -- leaves the recorded set here). One ZMSCORE for the lot.
      local function still(ids)
        local found = set_scores(set_key, ids)
        local kept, member = {}, {}
        for i = 2, #found, 2 do
          kept[#kept + 1] = found[i]
          member[found[i]] = true
        end
        if #kept < #ids then
          local stale = {}
          for i = 1, #ids do
            if not member[ids[i]] then stale[#stale + 1] = ids[i] end
          end
          for first = 1, #stale, TRIM_SLICE do
            redis.call('ZREM', rec_key, unpack(stale, first, math.min(first + TRIM_SLICE - 1, #stale)))
          end
        end
        return kept
      end
      trim_delete(set_key, rec_key, job_prefix,
                  still(redis.call('ZRANGEBYSCORE', rec_key, '-inf', now_ms, 'LIMIT', 0, limit)))
      if max_count > 0 then
        local excess = redis.call('ZCARD', set_key) - max_count
        if excess > 0 then
          if excess > limit then excess = limit end
          trim_delete(set_key, rec_key, job_prefix, still(redis.call('ZRANGE', rec_key, 0, excess - 1)))
        end
      end
      return
    end
    -- Too far behind: fall through, and keep the recorded set in step.
    local expired = redis.call('ZRANGEBYSCORE', set_key, '-inf', now_ms, 'LIMIT', 0, limit)
    trim_delete(set_key, rec_key, job_prefix, expired)
    if max_count > 0 then
      local excess = redis.call('ZCARD', set_key) - max_count
      if excess > 0 then
        if excess > limit then excess = limit end
        trim_delete(set_key, rec_key, job_prefix, redis.call('ZRANGE', set_key, 0, excess - 1))
      end
    end
    return
  end
  -- One ZCARD first: an empty set (every job kept for no time, as fire-and-forget settles leave
  -- it) costs one command and no clock; else the count after the expired ones left is
  -- known without a second ZCARD (they were members, each removed once).
  local size = redis.call('ZCARD', set_key)
  if size == 0 then return end
  now_ms = now_ms or server_now_ms()
  local expired = redis.call('ZRANGEBYSCORE', set_key, '-inf', now_ms, 'LIMIT', 0, limit)
  trim_delete(set_key, nil, job_prefix, expired)
  if max_count > 0 then
    local excess = size - #expired - max_count
    if excess > 0 then
      if excess > limit then excess = limit end
      trim_delete(set_key, nil, job_prefix, redis.call('ZRANGE', set_key, 0, excess - 1))
    end
  end
end
