-- Append an already-encoded JSON value to a JSON list kept in a hash field.
local function append_json(job_key, field, item_json)
  local current = redis.call('HGET', job_key, field)
  if (not current) or current == '' or current == '[]' then
    redis.call('HSET', job_key, field, '[' .. item_json .. ']')
  else
    redis.call('HSET', job_key, field, string.sub(current, 1, -2) .. ',' .. item_json .. ']')
  end
end
