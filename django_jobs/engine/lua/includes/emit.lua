-- Append one event to the queue's bounded events stream.
local function emit(events_key, maxlen, event, job_id, ...)
  redis.call('XADD', events_key, 'MAXLEN', '~', maxlen, '*', 'e', event, 'j', job_id, ...)
end
