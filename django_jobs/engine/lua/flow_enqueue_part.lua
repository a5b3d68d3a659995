--[[
  flow_enqueue_part: write the first part of a flow over several queues on a Redis Cluster (the
  root's: its jobs of the root's queue at depth 0), and record every other part, in this slot's
  outbox, as a create entry (kind 'c') that flow_deliver writes in its own slot
  (engine/relay.py _enqueue_flow_parts; docs/flows.md#redis-cluster). So once this call
  returned, the whole flow gets written: by the producer at once, or, if it dies between parts,
  by a relay of this queue.
  KEYS[1]: the queue's meta key, not used by the script: it routes the call to the queue's
  slot. Every key is built from the queue key base of the first group ("djj:{queue}:",
  engine/keys.py), same hash tag: base .. 'job:' .. id, 'wait', 'scheduled',
  'waiting_children', 'meta', 'events', 'marker', 'outbox', 'outbox_parts', 'outbox_seq'.
  ARGV[1] events maxlen  ARGV[2] enqueued ms every job holds ('0': the server time now)
  ARGV[3] the flow's nonce (stored as 'fn': tells a replay of this flow from another flow that
  reuses an id)  ARGV[4] grace ms: a relay delivers a create entry only this long after it was
  recorded (the producer delivers it at once)  ARGV[5] K, the number of create entries
  ARGV[6 .. 5 + 2K] pairs: outbox member ('c|<nonce>|<index, 6 digits>'), entry JSON
          {"k":"c","b":base of the part,"fn":nonce,"i":index,"n":parts,"a":[12 strings per job]}
          (recorded as {"seq":n,"e":enqueued ms, ...the same fields})
  ARGV[6 + 2K ..] groups of 12, as flow_enqueue.lua (all of one queue base)
  Replay-safe (includes/flow_part.lua): a job that exists with the same nonce is skipped, and a
  replay records no entry again.
  Returns: {1, enqueued ms (a replay: the first call's), seq of each create entry (0: a
           replay, that entry is gone)} written
           | {0, the 'e' of the job found}: a job of this part exists with another nonce
           (a duplicate id: nothing written)
  Events:  "waiting_children", "waiting" or "scheduled" per job created
  Body: includes/flow_part.lua (over includes/job_store.lua), the one place that transition is written.
]]
--@include now
--@include flow_part
local maxlen, nonce, grace = tonumber(ARGV[1]), ARGV[3], tonumber(ARGV[4])
local k = tonumber(ARGV[5])
local first = 6 + 2 * k
local now_ms = tonumber(ARGV[2])
if now_ms == 0 then now_ms = server_now_ms() end
local code, other = flow_part(ARGV, first, maxlen, nonce, now_ms)
if code == 0 then return { 0, other } end
local base = ARGV[first]
-- A replay answers with what the first call stored: the enqueue time its jobs and entries hold.
if other then now_ms = stored_enqueued_ms(base .. 'job:' .. ARGV[first + 1]) end
local reply = { 1, now_ms }
for n = 0, k - 1 do
  local member, entry = ARGV[6 + 2 * n], ARGV[7 + 2 * n]
  if other then
    -- A replay (the first call's reply was lost): its entries are recorded already.
    local stored = redis.call('HGET', base .. 'outbox', member)
    reply[#reply + 1] = tonumber(stored and string.match(stored, '^{"seq":(%d+),') or 0)
  else
    local seq = redis.call('INCR', base .. 'outbox_seq')
    redis.call('HSET', base .. 'outbox', member, '{"seq":' .. seq .. ',"e":' .. now_ms .. ',' .. string.sub(entry, 2))
    redis.call('ZADD', base .. 'outbox_parts', now_ms + grace, member)
    reply[#reply + 1] = seq
  end
end
return reply
