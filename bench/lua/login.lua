-- POST /user/login as a random one of the seeded users: wrk -s login.lua <url> -- <users> <password>
-- A 503 (hashing queue full) makes the client wait Retry-After (1 s), as a well-behaved SPA would.
-- Each request comes from a random client address (X-Forwarded-For, honoured from 127.0.0.1: uvicorn's
-- FORWARDED_ALLOW_IPS), as many users' logins do: the per-IP throttles stay on and count them.
local users, password = 1000, "bench-password-1"
local wait = 0

function init(args)
  users = tonumber(args[1] or users)
  password = args[2] or password
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  local body = string.format('{"username": "bench%d", "password": "%s"}', math.random(1, users), password)
  local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  return wrk.format("POST", nil, {["Content-Type"] = "application/json", ["X-Forwarded-For"] = ip}, body)
end

function response(status, headers, body)
  if status == 503 then wait = 1000 end
end

function delay()
  local d = wait
  wait = 0
  return d
end
