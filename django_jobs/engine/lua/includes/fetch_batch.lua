-- fetch's claim: promote due scheduled jobs, then claim up to N waiting jobs of one queue with
-- fresh leases, for fetch.lua and settle_and_fetch.lua (fetch.lua's header has the keys, the
-- arguments, the reply and the events). The claim of each job is mark_active (includes/mark_active).
--@include now
--@include wait_score
--@include emit
--@include wake
--@include promote
--@include mark_active
--@include queue_limits
--@include key_limits

-- k: fetch.lua's KEYS (wait, scheduled, active, meta, events, marker, rate); a: its ARGV.
-- Returns fetch.lua's reply.
local function fetch_batch(k, a)
  local rcall = redis.call
  local wait_key, scheduled_key, active_key, meta_key, events_key, marker_key, rate_key =
    k[1], k[2], k[3], k[4], k[5], k[6], k[7]
  local job_prefix = a[1]
  local maxlen = tonumber(a[2])
  local count = tonumber(a[3])
  local lease_ms = tonumber(a[4])
  local worker_id = a[5]
  local now_ms = server_now_ms()
  emit_batch()  -- one events entry per event kind for the whole call (includes/emit)

  promote_due(scheduled_key, wait_key, meta_key, events_key, job_prefix, now_ms, tonumber(a[6]), maxlen)

  local out = { -1, 0 }
  local flow = rcall('HMGET', meta_key, 'paused', 'rn', 'rp', 'cc', 'hold')
  if flow[1] == '1' then
    out[2] = 1
    emit_flush()
    return out
  end
  local held_ms, rate_ms
  local start_now = tonumber(a[10])
  local cut = start_now and start_now < count and (tonumber(flow[4]) or tonumber(a[9])) > 0
  if cut then
    count = start_now
    out[2] = 2
  end
  count, held_ms, rate_ms = queue_allowance(flow, meta_key, active_key, rate_key, count, tonumber(a[7]),
                                            tonumber(a[8]), tonumber(a[9]), now_ms)

  -- Whether jobs are left waiting is read once (one ZCARD) after the claim, or known without it
  -- when the pop came back short (wait is empty): nothing below adds to or takes from wait.
  local claimed = 0
  if count > 0 then
    local popped = rcall('ZPOPMIN', wait_key, count)
    claimed = #popped / 2
    if claimed > 0 then
      local deadline = now_ms + lease_ms
      -- One counter bump for the batch: tokens last-claimed+1 .. last are unique and increasing.
      local token = rcall('HINCRBY', meta_key, 'fence', claimed) - claimed
      local first_token = token
      -- The call's events trim the stream on one fetch in EMIT_TRIM_EVERY tokens (includes/emit).
      emit_untrimmed_call(first_token, first_token + claimed)
      local worker_json = cjson.encode(worker_id)
      local active_args = {}
      -- ACTIVE_EVENTS False (a[11]): no "active" event, unless the mirror holds the queue.
      local active_events = a[11] ~= '1' or mirror_cap(string.sub(events_key, 1, -7))
      for i = 1, #popped, 2 do
        local job_id = popped[i]
        local job_key = job_prefix .. job_id
        local fields = rcall('HMGET', job_key, 'd', 'e', 'cid', 'par', 'st', 'a', 'wk', 'lk', 'lc', 'lr', 'lp')
        if fields[1] and fields[8] and key_park(fields, job_key, job_id, popped[i + 1], scheduled_key, active_key,
                                                events_key, maxlen, now_ms) then
          -- Over its key's limit: parked (scheduled), not claimed; no attempt counted.
        elseif fields[1] then
          token = token + 1
          local attempt = mark_active(job_key, fields, token, worker_id, worker_json, now_ms, popped[i + 1])
          if fields[8] then key_started(fields, job_id, token, now_ms) end
          active_args[#active_args + 1] = deadline
          active_args[#active_args + 1] = job_id
          if active_events then emit(events_key, maxlen, 'active', job_id) end
          local n = #out
          out[n + 1] = job_id
          out[n + 2] = token
          out[n + 3] = fields[1]
          out[n + 4] = attempt
          out[n + 5] = fields[2] or 0 -- a nil would end the reply early
          out[n + 6] = fields[3] or ''
          out[n + 7] = fields[4] or ''
        end
      end
      if #active_args > 0 then rcall('ZADD', active_key, unpack(active_args)) end
      if rate_ms > 0 and token > first_token then
        local starts = {}
        for t = first_token + 1, token do starts[#starts + 1] = t end
        record_starts(rate_key, starts, now_ms, rate_ms)
      end
    end
  end
  local waiting = (count > 0 and claimed < count) and 0 or rcall('ZCARD', wait_key)
  if held_ms < 0 and waiting > 0 and (claimed > 0 or (count <= 0 and cut)) then
    -- More work is waiting than this worker had room for, or (cut) no free thread here but the
    -- limit has room: wake another worker.
    wake(marker_key)
  end

  if held_ms >= 0 and waiting > 0 then
    out[1] = held_ms
  elseif waiting == 0 then
    local nxt = rcall('ZRANGE', scheduled_key, 0, 0, 'WITHSCORES')
    if nxt[2] then
      local delta = tonumber(nxt[2]) - now_ms
      if delta < 0 then delta = 0 end
      out[1] = delta
    end
  else
    out[1] = 0
  end
  emit_flush()
  return out
end
