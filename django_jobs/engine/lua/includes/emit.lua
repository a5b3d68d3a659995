-- Append one event to the queue's bounded events stream: trimmed at maxlen (EVENTS_MAXLEN),
-- or only at the mirror's cap while a database mirror follows the queue (includes/mirror).
--@include mirror
local function emit(events_key, maxlen, event, job_id, ...)
  local cap = mirror_cap(string.sub(events_key, 1, -7))
  if cap and cap > maxlen then maxlen = cap end
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'e', event, 'j', job_id, ...)
end
