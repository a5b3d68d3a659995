--[[
  settle_and_fetch: settle a batch of outcomes of a queue's active jobs, then fetch from that
  queue: settle.lua and fetch.lua in one script call (a worker at saturation: the outcomes of its
  last batch ride its next fetch, Engine.settle_and_fetch). One dispatch and one run of the
  includes' chunk instead of two, the outcomes packed in one string instead of 6 arguments each.
  The settle runs first, so a retry without delay it puts back to waiting can be claimed by the
  fetch; each part is fenced and replay-safe as its own script is (a replayed call settles
  nothing twice; its fetch claims anew, and what the lost reply claimed is recovered after its
  lease, as after a lost fetch reply).
  KEYS[1] active ZSET  KEYS[2] wait ZSET  KEYS[3] scheduled ZSET  KEYS[4] completed ZSET
  KEYS[5] failed ZSET  KEYS[6] cancelled ZSET  KEYS[7] meta HASH  KEYS[8] events STREAM
  KEYS[9] marker LIST  KEYS[10] rate ZSET: settle.lua's KEYS, then fetch.lua's KEYS[7]
  ARGV[1] job key prefix  ARGV[2] events maxlen
  ARGV[3..6] settle.lua's ARGV[3..6] (keep completed ms and count, keep failed ms and count)
  ARGV[7] the outcomes, packed in one JSON list (engine/transitions.py _pack_outcomes): groups
          of 6 as settle.lua's ARGV[7..] (job_id, token, kind, value, delay_ms, keep_ms)
  ARGV[8..] fetch.lua's ARGV[3..] (count, lease_ms, worker_id, promote limit, the default
          limits, and optionally start_now and the no-"active"-events flag)
  Returns: { settle.lua's reply (one code per outcome), fetch.lua's reply }
  Events:  settle.lua's, then fetch.lua's (each part its own batch: includes/emit)
  Bodies: includes/settle_batch.lua and includes/fetch_batch.lua, which settle.lua and fetch.lua
  run too.
]]
--@include settle_batch
--@include fetch_batch
local settled = settle_batch(ARGV, cjson.decode(ARGV[7]), 1)
local fetch_args = { ARGV[1], ARGV[2] }
for i = 8, #ARGV do fetch_args[#fetch_args + 1] = ARGV[i] end
return { settled, fetch_batch({ KEYS[2], KEYS[3], KEYS[1], KEYS[7], KEYS[8], KEYS[9], KEYS[10] }, fetch_args) }
