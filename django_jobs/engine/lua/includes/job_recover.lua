-- The recover transition, for recover.lua (a job whose lease expired: its worker died).
--@include job_finish

-- Recover job_id of queue q, whose lease expired (the caller took it out of active's expired
-- range): its recoveries ('rec') + 1, then back to wait at its old place in line (event
-- stalled), or, past max_recoveries, failed with why = worker_lost, or cancelled when a cancel
-- was requested (includes/job_finish: job_interrupted). Returns { what, correlation id } with
-- what 'stalled' | 'failed' | 'cancelled', or nil when the job is not active (nothing to do).
local function job_recover(q, job_id, clock, keep_ms, max_recoveries)
  local job_key = q.job .. job_id
  local f = redis.call('HMGET', job_key, 's', 'ws', 'p', 'cx', 'uk', 'lk', 'cid')
  if f[1] ~= 'active' then
    redis.call('ZREM', q.active, job_id)
    return nil
  end
  local recoveries = redis.call('HINCRBY', job_key, 'rec', 1)
  local fail_err
  if recoveries > max_recoveries then
    fail_err = cjson.encode({
      exception_class_path = 'django_jobs.exceptions.LeaseLost',
      traceback = 'The job\'s worker stopped renewing its lease ' .. recoveries .. ' times (worker_lost).',
    })
  end
  local what = job_interrupted(q, job_key, job_id, f, clock, keep_ms, 'stalled', fail_err, 'worker_lost')
  if what == 'requeued' then what = 'stalled' end
  return { what, f[7] or '' }
end
