-- Put an interrupted active job back to waiting at the front of its priority (its original
-- wait score, kept in 'ws'); the interrupted run does not count as an attempt.
local function requeue_front(job_key, job_id, wait_key, meta_key, saved_score, priority)
  redis.call('HINCRBY', job_key, 'a', -1)
  local score = tonumber(saved_score)
  if not score then
    score = next_wait_score(meta_key, priority or 0)
    redis.call('HSET', job_key, 'ws', score)
  end
  redis.call('ZADD', wait_key, score, job_id)
  redis.call('HSET', job_key, 's', 'waiting')
end
