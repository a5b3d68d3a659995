--[[
  leader_renew: extend (or give up) the scheduler leader lease, fenced by epoch.
  KEYS[1] leader STRING ("<epoch>|<holder>")
  ARGV[1] "<epoch>|<holder>" as acquired  ARGV[2] lease_ms (0 = resign: delete the lease)
  Returns: { 1, now_ms } still the leader (renewed, or resigned), { 0, now_ms } the lease is
           lost: expired, or held by another holder or epoch (the caller must stop firing).
  Events:  none
]]
--@include now
local rcall = redis.call
local leader_key = KEYS[1]
local token, lease_ms = ARGV[1], tonumber(ARGV[2])
local now_ms = server_now_ms()
if rcall('GET', leader_key) ~= token then
  return { 0, now_ms }
end
if lease_ms <= 0 then
  rcall('DEL', leader_key)
else
  rcall('PEXPIRE', leader_key, lease_ms)
end
return { 1, now_ms }
