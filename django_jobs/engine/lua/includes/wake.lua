-- Leave one token in the marker list so a blocked worker wakes up (never more than one).
local function wake(marker_key)
  if redis.call('LLEN', marker_key) == 0 then
    redis.call('RPUSH', marker_key, '1')
  end
end
