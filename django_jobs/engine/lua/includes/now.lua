-- now_ms: Redis server time in integer milliseconds. Workers' clocks never decide.
local function server_now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
