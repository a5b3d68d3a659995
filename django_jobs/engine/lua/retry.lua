--[[
  retry: move failed or cancelled jobs back to waiting, starting over: attempts, worker ids,
  result, failure reason and cancel flag are cleared, the errors of earlier runs move to the
  history list 'eh' (appended, never erased); the job goes to the back of its priority's line.
  The body of each retry is includes/job_retry.lua (one rule for every entry point).
  A job that held a unique key until it finished ('uk' in its hash) takes the key back when it
  is free, so a new enqueue with that key is deduplicated against it again (and the lock is
  released when it finishes, includes/unique_release). When another job now guards the key
  (includes/unique_guard) the job is not retried: retrying it would make two jobs of one key.
  A throttle window's key (no 'uk': its lock only lives for its window) is not taken back.
  Flows (docs/flows.md#retrying): a parent that ended while waiting for its children (failed
  through a child, or cancelled) is retried only together with the children that failed it
  (ids of this call): it goes back to waiting_children and its children start over; retrying a
  failed child alone re-opens the parent that failed through it (and so on up). Their keys may
  be on other queues (built from the bases stored in the hashes: a single Redis server); on a
  Redis Cluster a step toward a job on another slot is written in this queue's outbox for the
  relay (includes/flow.lua: 'r' re-open a parent, 'o' re-open a child).
  KEYS[1] wait ZSET  KEYS[2] failed ZSET  KEYS[3] cancelled ZSET  KEYS[4] meta HASH
  KEYS[5] events STREAM  KEYS[6] marker LIST
  ARGV[1] job key prefix: ARGV[1] .. job_id is the job HASH (same hash tag as KEYS)
  ARGV[2] events maxlen  ARGV[3..] job ids
  Returns: a list, one code per id (engine/protocol.py RetryCode): 1 retried (also a job this
           call already started over through its flow) | 0 not failed or cancelled (nothing
           written; a replay finds the job waiting) | -1 JOB_NOT_FOUND | 2 not retried:
           another job guards its unique key (nothing written; retry it once that job is
           done) | 3 not retried: a flow parent that failed through a child that is not
           retried with it (nothing written; retry that child, which re-opens the parent)
  Events:  "waiting" with why = "retried" per job started over; "waiting_children" with
           why = "retried" per re-opened flow parent (of this slot)
]]
--@include now
--@include job_retry
local q = queue_of_prefix(ARGV[1], tonumber(ARGV[2]))
local call = { ids = {}, done = {} }
for i = 3, #ARGV do call.ids[ARGV[i]] = true end
local now_ms = server_now_ms()
local out = {}
for i = 3, #ARGV do
  out[#out + 1] = job_retry(q, ARGV[i], now_ms, call)
end
if call.woke then wake(q.marker) end
return out
