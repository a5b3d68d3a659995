-- A job left active: if a fetch was held by the queue's concurrency limit ('cw' in meta),
-- wake one worker so it takes the free slot now instead of at its next poll.
local function slot_freed(meta_key, marker_key)
  if redis.call('HGET', meta_key, 'cw') == '1' then
    redis.call('HDEL', meta_key, 'cw')
    wake(marker_key)
  end
end
