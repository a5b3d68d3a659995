-- A job with a unique key ('uk' in its hash: the full name of its lock STRING, same hash tag)
-- reached a final state: drop the lock if it still names this job (a later job may own it).
-- Correctness does not depend on this: enqueue_unique ignores a lock whose job is no longer
-- guarded. This only keeps finished keys from piling up.
local function unique_release(job_id, lock_key)
  if lock_key and redis.call('GET', lock_key) == job_id then
    redis.call('DEL', lock_key)
  end
end
