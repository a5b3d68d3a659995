--[[
  leader_acquire: become the scheduler leader if nobody holds the lease.
  KEYS[1] leader STRING ("<epoch>|<holder>", expires with the lease)
  KEYS[2] epoch STRING (counter, never expires: the fencing epoch)
  ARGV[1] holder id  ARGV[2] lease_ms
  Returns: { epoch, now_ms, current }: epoch > 0 when this holder leads (a fresh lease with a
           new epoch, or its own lease renewed: a replay), 0 when another holder leads;
           current = the leader value now in Redis.
  Events:  none (leadership is not a job state change)
]]
--@include now
local rcall = redis.call
local leader_key, epoch_key = KEYS[1], KEYS[2]
local holder, lease_ms = ARGV[1], tonumber(ARGV[2])
local now_ms = server_now_ms()
local current = rcall('GET', leader_key)
if not current then
  local epoch = rcall('INCR', epoch_key)
  current = epoch .. '|' .. holder
  rcall('SET', leader_key, current, 'PX', lease_ms)
  return { epoch, now_ms, current }
end
local sep = string.find(current, '|', 1, true)
if sep and string.sub(current, sep + 1) == holder then
  rcall('PEXPIRE', leader_key, lease_ms)
  return { tonumber(string.sub(current, 1, sep - 1)), now_ms, current }
end
return { 0, now_ms, current }
