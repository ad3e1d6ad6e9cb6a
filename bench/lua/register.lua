-- POST /user/register with a new, unique account each time: wrk -s register.lua <url> -- <nonce>
local nonce, counter = "x", 0

function init(args)
  nonce = (args[1] or "x") .. tostring({}):sub(8)
end

function request()
  counter = counter + 1
  local name = string.format("r%s%d", nonce, counter)
  local body = string.format('{"username": "%s", "email": "%s@example.com", "password": "bench-password-1"}', name, name)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
