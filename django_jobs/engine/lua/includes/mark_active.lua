-- Mark a job active for one worker: new token, attempt + 1, worker id appended to 'wk',
-- started time on the first claim. fields = HMGET job 'd' 'e' 'cid' 'par' 'st' 'a' 'wk'
-- (in this order; more may follow). worker_json = cjson.encode(worker_id), encoded once.
-- Returns the new attempt number.
local function mark_active(job_key, fields, token, worker_id, worker_json, now_ms)
  local attempt = (tonumber(fields[6]) or 0) + 1
  local workers
  if fields[7] then
    workers = string.sub(fields[7], 1, -2) .. ',' .. worker_json .. ']'
  else
    workers = '[' .. worker_json .. ']'
  end
  if fields[5] then
    redis.call('HSET', job_key, 's', 'active', 'tok', token, 'w', worker_id, 'la', now_ms, 'a', attempt, 'wk', workers)
  else
    redis.call('HSET', job_key, 's', 'active', 'tok', token, 'w', worker_id, 'la', now_ms, 'a', attempt, 'wk', workers,
               'st', now_ms)
  end
  return attempt
end
