--[[
  mirror_done: the database mirror wrote rows (committed): acknowledge their events, mark the
  finished jobs it recorded as deletable by retention, run retention, trim the events stream.
  See includes/mirror.lua: while the mirror's flag exists, nothing it has not recorded leaves.
  KEYS[1] events STREAM  KEYS[2] completed ZSET  KEYS[3] failed ZSET  KEYS[4] cancelled ZSET
  ARGV[1] consumer group  ARGV[2] job key prefix  ARGV[3] events maxlen (EVENTS_MAXLEN)
  ARGV[4] keep completed count  ARGV[5] keep failed count  ARGV[6] n: how many entry ids follow
  ARGV[7 .. 6+n] entry ids to acknowledge (XACK)
  ARGV[7+n ..] pairs: job id, finish time ms ('f') of the finished snapshot the row holds;
            a job still finished at that time is listed in its state's 'rec:' set (scored like
            its state's set: its keep-until), so retention may delete it
  Returns: { acknowledged, recorded, events trimmed }
  Events:  none (the mirror only reads jobs; retention leaves no trace, as in settle.lua)
  The stream keeps at least its last maxlen events and every event the group has not
  acknowledged: MAXLEN when those fit in maxlen, else MINID at the oldest unacknowledged one.
]]
--@include now
--@include trim
local rcall = redis.call
local events_key, group, job_prefix = KEYS[1], ARGV[1], ARGV[2]
local maxlen, keep_c, keep_f, n = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local base = string.sub(job_prefix, 1, -5)
local sets = { completed = KEYS[2], failed = KEYS[3], cancelled = KEYS[4] }
local acked = 0
if n > 0 then
  local ids = {}
  for i = 7, 6 + n do ids[#ids + 1] = ARGV[i] end
  for first = 1, #ids, 2000 do
    acked = acked + rcall('XACK', events_key, group, unpack(ids, first, math.min(first + 1999, #ids)))
  end
end
-- A job still finished at the time the row holds is a candidate of its state's set; then, per
-- set, one ZMSCORE reads the candidates' scores (a member of the set keeps its score) and one
-- ZADD lists them as recorded: one command a job (its HMGET), not three.
local recorded = 0
local candidates = { completed = {}, failed = {}, cancelled = {} }
for i = 7 + n, #ARGV, 2 do
  local job_id, finished = ARGV[i], ARGV[i + 1]
  local f = rcall('HMGET', job_prefix .. job_id, 's', 'f')
  local ids = f[1] and candidates[f[1]]
  if ids and f[2] == finished then ids[#ids + 1] = job_id end
end
for _, state in ipairs({ 'completed', 'failed', 'cancelled' }) do
  local set = sets[state]
  local found = set_scores(set, candidates[state])
  for first = 1, #found, 2000 do
    rcall('ZADD', recorded_key(base, set), unpack(found, first, math.min(first + 1999, #found)))
  end
  recorded = recorded + #found / 2
end
if mirror_cap(base) then
  local now_ms = server_now_ms()
  local limit = math.max(TRIM_BATCH, recorded)
  trim_finished(KEYS[2], job_prefix, now_ms, keep_c, limit)
  trim_finished(KEYS[3], job_prefix, now_ms, keep_f, limit)
  trim_finished(KEYS[4], job_prefix, now_ms, keep_f, limit)
end
local trimmed = 0
local length = rcall('XLEN', events_key)
if length > maxlen then
  local pending, lag, last = 0, false, '0-0'
  for _, g in ipairs(rcall('XINFO', 'GROUPS', events_key)) do
    local info = {}
    for j = 1, #g, 2 do info[g[j]] = g[j + 1] end
    if info['name'] == group then
      pending, lag, last = tonumber(info['pending']) or 0, tonumber(info['lag']), info['last-delivered-id']
    end
  end
  if lag and pending + lag <= maxlen then
    trimmed = rcall('XTRIM', events_key, 'MAXLEN', '~', maxlen)
  else
    local floor = last
    if pending > 0 then floor = rcall('XPENDING', events_key, group)[2] end
    trimmed = rcall('XTRIM', events_key, 'MINID', '~', floor)
  end
end
return { acked, recorded, trimmed }
