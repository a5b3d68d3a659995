-- A unique key's lock STRING (lock_key, same hash tag) and the job prefix: the id of the job
-- that holds the key, its state and whether a throttle window guards it, when that job still
-- guards the key (docs/flow-control.md): while its window lives (PTTL), else while it is
-- waiting or scheduled, or active with until = 'f' ('ug' in its hash). nil when the key is free.
local function unique_guard(lock_key, job_prefix)
  local holder = redis.call('GET', lock_key)
  if not holder then return nil end
  local fields = redis.call('HMGET', job_prefix .. holder, 's', 'ug')
  local state = fields[1]
  if redis.call('PTTL', lock_key) > 0 then return holder, state, true end -- guarded while the window lives
  if state == 'waiting' or state == 'scheduled' or (state == 'active' and fields[2] == 'f') then
    return holder, state
  end
  return nil
end
