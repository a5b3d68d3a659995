--[[
  mirror_snapshot: the database mirror reads the hashes of jobs and the events stream's newest
  id at one instant (the hashes hold exactly the effect of every event up to that id, which
  makes it their version). One call instead of a MULTI of one HGETALL per job: the client
  packs one command and parses one reply (no QUEUED per job).
  KEYS[1] events STREAM
  ARGV[1] job key prefix (a job's hash is prefix .. job id: keys of this queue's hash tag,
          named in ARGV because there are thousands)
  ARGV[2] n: the first n job ids are asked leanly: a job of them that is waiting comes back as
          { 's', 'waiting' } only (a mirror behind holds its row back: mirror/consumer.py)
  ARGV[3 ..] job ids
  Returns: { newest entry id or '0-0', { field, value, ... } per job id (empty: no hash) }
  Events:  none (reads only)
]]
local rcall = redis.call
local job_prefix, lean = ARGV[1], tonumber(ARGV[2]) or 0
local newest = rcall('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local out = { newest[1] and newest[1][1] or '0-0' }
for i = 3, #ARGV do
  local key = job_prefix .. ARGV[i]
  if i - 2 <= lean and rcall('HGET', key, 's') == 'waiting' then
    out[i - 1] = { 's', 'waiting' }
  else
    out[i - 1] = rcall('HGETALL', key)
  end
end
return out
