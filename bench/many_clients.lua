-- wrk script: every request comes from one of 1,000 client addresses (X-Forwarded-For, believed
-- because the benchmark server trusts 127.0.0.1 as a proxy), so the per-client rate limit runs
-- with realistic budgets instead of one client's enormous one.
local counter = 0
request = function()
  counter = counter + 1
  local n = counter % 1000
  local address = "10.0." .. math.floor(n / 250) .. "." .. (n % 250 + 1)
  return wrk.format(nil, nil, {["X-Forwarded-For"] = address})
end
