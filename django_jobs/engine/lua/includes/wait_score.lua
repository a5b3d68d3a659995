-- Score of a job in the wait ZSET: priority first (higher runs first), then FIFO.
-- (100 - priority) * 2^44 + seq stays below 2^53, so doubles hold it exactly.
local PRIORITY_SPAN = 17592186044416 -- 2^44
local function next_wait_score(meta_key, priority)
  local seq = redis.call('HINCRBY', meta_key, 'seq', 1)
  return (100 - tonumber(priority)) * PRIORITY_SPAN + seq
end
