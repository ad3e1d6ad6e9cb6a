-- POST /user/register with a new, unique account each time: wrk -s register.lua <url> -- <nonce>
local nonce, counter = "x", 0

function init(args)
  nonce = (args[1] or "x") .. tostring({}):sub(8)
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  counter = counter + 1
  local name = string.format("r%s%d", nonce, counter)
  local body = string.format('{"username": "%s", "email": "%s@example.com", "password": "bench-password-1"}', name, name)
  -- from a random client address, as many users' signups are (the per-IP throttle stays on)
  local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip}, body)
end
