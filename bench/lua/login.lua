-- POST /user/login as a random one of the seeded users: wrk -s login.lua <url> -- <users> <password>
-- A 503 (hashing queue full) makes the client wait Retry-After (1 s), as a well-behaved SPA would.
local users, password = 1000, "bench-password-1"
local wait = 0

function init(args)
  users = tonumber(args[1] or users)
  password = args[2] or password
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

function request()
  local body = string.format('{"username": "bench%d", "password": "%s"}', math.random(1, users), password)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 503 then wait = 1000 end
end

function delay()
  local d = wait
  wait = 0
  return d
end
