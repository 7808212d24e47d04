-- wrk script: POST the question in BODY to the conversations in CONVERSATIONS (comma-separated
-- ids), each request to the next one in turn (an answer locks its conversation: one conversation
-- per request at a time keeps the figure about answering, not about waiting for that lock).
local paths = {}
for id in string.gmatch(os.getenv("CONVERSATIONS") or "", "[^,]+") do
  paths[#paths + 1] = "/api/v1/conversations/" .. id .. "/messages"
end
local body = os.getenv("BODY") or '{"content":"When are refunds paid?"}'
local sent = 0
wrk.headers["Content-Type"] = "application/json"

request = function()
  sent = sent + 1
  return wrk.format("POST", paths[(sent % #paths) + 1], nil, body)
end
