-- The release transition, for release.lua (a stopping worker hands its running jobs back).
--@include job_finish

-- Release job_id of queue q held under token: back to wait at its old place in line (the run
-- not counted, event released), or cancelled when a cancel was requested while it ran
-- (includes/job_finish: job_interrupted). Fenced: a job no longer active under this token is
-- left alone. Returns 'requeued' | 'cancelled' | nil (not released; a replay).
local function job_release(q, job_id, token, clock, keep_ms)
  local job_key = q.job .. job_id
  local f = redis.call('HMGET', job_key, 's', 'ws', 'p', 'cx', 'uk', 'lk', 'tok')
  if f[1] ~= 'active' or f[7] ~= token then return nil end
  return job_interrupted(q, job_key, job_id, f, clock, keep_ms, 'released')
end
