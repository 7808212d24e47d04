-- wrk script for POST /auth/refresh: each wrk thread owns one session and presents the refresh
-- token its previous answer gave it (refresh tokens are single-use; presenting one twice would
-- end the session). bench/hot_path.py passes the tokens, one per thread, in TOKENS.
local tokens = {}
for token in string.gmatch(os.getenv("TOKENS") or "", "[^,]+") do table.insert(tokens, token) end
local next_index = 1
local threads = {}

function setup(thread)
  thread:set("token", tokens[next_index])
  next_index = next_index + 1
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  return wrk.format(nil, nil, nil, '{"refresh_token":"' .. token .. '"}')
end

function response(status, headers, body)
  local fresh = string.match(body, '"refresh_token":"([^"]+)"')
  if fresh then token = fresh end
end
