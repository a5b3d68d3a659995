--[[
  purge: delete up to N finished jobs of one state (oldest first), hashes and all.
  KEYS[1] the state ZSET (completed, failed or cancelled)
  ARGV[1] job key prefix: ARGV[1] .. job_id is the job HASH (same hash tag as KEYS[1])
  ARGV[2] limit (jobs per call: keeps each call short)
  Returns: the number of jobs deleted (0 when the set is empty; a replay deletes the next batch)
  Events:  none (like retention trimming: finished jobs leave no trace when deleted)
]]
local rcall = redis.call
local set_key, job_prefix, limit = KEYS[1], ARGV[1], tonumber(ARGV[2])
local ids = rcall('ZRANGE', set_key, 0, limit - 1)
if #ids == 0 then return 0 end
local keys = {}
for i = 1, #ids do keys[i] = job_prefix .. ids[i] end
rcall('DEL', unpack(keys))
rcall('ZREM', set_key, unpack(ids))
local base = string.sub(job_prefix, 1, -5)
rcall('ZREM', base .. 'rec:' .. string.sub(set_key, #base + 1), unpack(ids))  -- includes/mirror
return #ids
