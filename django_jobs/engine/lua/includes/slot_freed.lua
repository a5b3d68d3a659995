-- A job left active: if a fetch was held by the queue's concurrency limit ('cw' in meta),
-- wake one worker so it takes the free slot now instead of at its next poll. cw: meta 'cw' as
-- the caller read it this call (false: missing), or nil to read it here.
local function slot_freed(meta_key, marker_key, cw)
  if cw == nil then cw = redis.call('HGET', meta_key, 'cw') end
  if cw == '1' then
    redis.call('HDEL', meta_key, 'cw')
    wake(marker_key)
  end
end
