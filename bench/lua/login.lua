-- POST a login as a random one of the seeded users:
--   wrk -s login.lua <url> -- <users> <password> [<username template>] [json|form]
-- The template names user i (default "bench%d"); "json" (default) sends {"username", "password"},
-- "form" sends username=...&password=... (OAuth2's password form, fastapi-users' login).
-- A 503 (hashing queue full) makes the client wait Retry-After (1 s), as a well-behaved SPA would.
-- Each request comes from a random client address (X-Forwarded-For, honoured from 127.0.0.1: uvicorn's
-- FORWARDED_ALLOW_IPS), as many users' logins do: the per-IP throttles stay on and count them.
local users, password, template, format = 1000, "bench-password-1", "bench%d", "json"
local wait = 0

function init(args)
  users = tonumber(args[1] or users)
  password = args[2] or password
  template = args[3] or template
  format = args[4] or format
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

function request()
  local username = string.format(template, math.random(1, users))
  local ip = string.format("10.%d.%d.%d", math.random(0, 255), math.random(0, 255), math.random(1, 254))
  local body, content_type
  if format == "form" then
    body = "username=" .. urlencode(username) .. "&password=" .. urlencode(password)
    content_type = "application/x-www-form-urlencoded"
  else
    body = string.format('{"username": "%s", "password": "%s"}', username, password)
    content_type = "application/json"
  end
  return wrk.format("POST", nil, {["Content-Type"] = content_type, ["X-Forwarded-For"] = ip}, body)
end

function response(status, headers, body)
  if status == 503 then wait = 1000 end
end

function delay()
  local d = wait
  wait = 0
  return d
end
