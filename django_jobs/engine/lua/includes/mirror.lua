-- The database mirror's hold on a queue (django_jobs/mirror/, docs/mirror.md#lossless).
-- While a mirror follows the queue it keeps the flag key base .. 'mirror' (a STRING holding
-- its cap, MIRROR["MAX_LAG"], with a PX of MIRROR["HOLD"]). While the flag exists:
-- - the events stream is trimmed only at the cap (includes/emit); the mirror trims below it
--   what it has acknowledged (mirror_done.lua);
-- - retention deletes only finished jobs the mirror recorded: mirror_done.lua lists them in
--   base .. 'rec:' .. state (scored like the state's set), and includes/trim deletes from
--   there, unless more than the cap of a state's jobs wait unrecorded (then as without it).
-- Without the flag (no mirror, or none seen for HOLD seconds) both work as they always did.
local MIRROR_CAPS = {}
local function mirror_cap(base)
  local cap = MIRROR_CAPS[base]
  if cap == nil then
    cap = tonumber(redis.call('GET', base .. 'mirror') or '') or false
    MIRROR_CAPS[base] = cap
  end
  return cap
end

-- The set listing the recorded jobs of a finished state's set (base .. state).
local function recorded_key(base, set_key)
  return base .. 'rec:' .. string.sub(set_key, #base + 1)
end
