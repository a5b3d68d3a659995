-- Queue flow control for fetch (docs/flow-control.md): how many jobs this fetch may start.
-- flow = HMGET meta 'paused' 'rn' 'rp' 'cc' 'hold', read once by the caller. Meta fields:
--   'rn', 'rp'  run-time rate override: at most rn starts in any window of rp ms (rn 0 = no limit)
--   'cc'        run-time concurrency override: at most cc jobs in active (0 = no limit)
--   'hold'      no starts before this time, ms (a job raised RateLimited with backoff="queue")
--   'cw'        set while a fetch is held by the concurrency limit; slot_freed() wakes a worker
-- A missing override falls back to the settings' defaults d_rn, d_rp, d_cc (0 = no limit).
-- rate_key ZSET: one entry per start inside the current window, score = start time ms.
-- Returns: allowed (0..count), held_ms (-1 not held; else ms until a start may be allowed,
-- CONCURRENCY_POLL_MS when held by concurrency: a settle wakes a worker sooner), rate_ms
-- (the rate window when a rate limit is in force, else 0: pass it to record_starts).
local CONCURRENCY_POLL_MS = 1000
local function queue_allowance(flow, meta_key, active_key, rate_key, count, d_rn, d_rp, d_cc, now_ms)
  local hold = tonumber(flow[5])
  if hold and hold > now_ms then return 0, hold - now_ms, 0 end
  local allowed, held_ms = count, -1
  local cc = tonumber(flow[4]) or d_cc
  if cc > 0 then
    local free = cc - redis.call('ZCARD', active_key)
    if free <= 0 then
      redis.call('HSET', meta_key, 'cw', '1')
      return 0, CONCURRENCY_POLL_MS, 0
    end
    if free < allowed then allowed = free end
  end
  local rn, rp = tonumber(flow[2]), tonumber(flow[3])
  if not rn then rn, rp = d_rn, d_rp end
  if rn > 0 then
    redis.call('ZREMRANGEBYSCORE', rate_key, '-inf', now_ms - rp)
    local used = redis.call('ZCARD', rate_key)
    if used >= rn then
      local oldest = redis.call('ZRANGE', rate_key, 0, 0, 'WITHSCORES')
      held_ms = tonumber(oldest[2]) + rp - now_ms
      if held_ms < 1 then held_ms = 1 end
      return 0, held_ms, 0
    end
    if rn - used < allowed then allowed = rn - used end
    return allowed, held_ms, rp
  end
  return allowed, held_ms, 0
end

-- Record starts in the rate window (call only when queue_allowance returned rate_ms > 0).
-- members: unique ids of the starts (their lease tokens, unique per queue).
local function record_starts(rate_key, members, now_ms, window_ms)
  local args = {}
  for i = 1, #members do
    args[#args + 1] = now_ms
    args[#args + 1] = members[i]
  end
  redis.call('ZADD', rate_key, unpack(args))
  redis.call('PEXPIRE', rate_key, window_ms)
end
