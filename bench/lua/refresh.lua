-- POST /user/refresh-token, each response's new refresh token queued for a later request:
-- wrk -s refresh.lua <url> -- <file with one refresh token per line>
-- Needs at least as many tokens as connections; a spent token is never sent twice.
local queue, head, tail = {}, 1, 0

function init(args)
  for line in io.lines(args[1]) do
    tail = tail + 1
    queue[tail] = line
  end
end

function request()
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
                    string.format('{"refresh_token": "%s"}', token))
end

function response(status, headers, body)
  local token = body:match('"refresh_token":"([^"]+)"')
  if token then
    tail = tail + 1
    queue[tail] = token
  end
end
