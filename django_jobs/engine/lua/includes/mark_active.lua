-- Mark a job active for one worker: new token, attempt + 1, worker id appended to 'wk',
-- started time on the first claim, and 'ws', the wait score it was claimed at (what a release
-- or a recovery puts it back in line with: includes/requeue), when it came from wait.
-- fields = HMGET job 'd' 'e' 'cid' 'par' 'st' 'a' 'wk' (in this order; more may follow).
-- worker_json = cjson.encode(worker_id), encoded once. ws: the job's score in wait, or nil.
-- Returns the new attempt number.
local function mark_active(job_key, fields, token, worker_id, worker_json, now_ms, ws)
  local attempt = (tonumber(fields[6]) or 0) + 1
  local workers
  if fields[7] then
    workers = string.sub(fields[7], 1, -2) .. ',' .. worker_json .. ']'
  else
    workers = '[' .. worker_json .. ']'
  end
  if fields[5] then
    if ws then
      redis.call('HSET', job_key, 's', 'active', 'tok', token, 'w', worker_id, 'la', now_ms, 'a', attempt, 'wk', workers,
                 'ws', ws)
    else
      redis.call('HSET', job_key, 's', 'active', 'tok', token, 'w', worker_id, 'la', now_ms, 'a', attempt, 'wk', workers)
    end
  elseif ws then
    redis.call('HSET', job_key, 's', 'active', 'tok', token, 'w', worker_id, 'la', now_ms, 'a', attempt, 'wk', workers,
               'st', now_ms, 'ws', ws)
  else
    redis.call('HSET', job_key, 's', 'active', 'tok', token, 'w', worker_id, 'la', now_ms, 'a', attempt, 'wk', workers,
               'st', now_ms)
  end
  return attempt
end
