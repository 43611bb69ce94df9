-- wrk script: each connection creates a VM record, deletes it once the create has answered,
-- and starts over. Run one connection per thread (wrk -tN -cN), so that each thread's
-- requests go out one after the other. The token comes from NOVACRON_TOKEN.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  counter = 0
  errors = 0
  created = nil
  pending = nil
  token = "Bearer " .. os.getenv("NOVACRON_TOKEN")
end

function request()
  if created then
    local name = created
    created = nil
    pending = nil
    return wrk.format("DELETE", "/api/v1/vms/" .. name, { ["Authorization"] = token })
  end
  counter = counter + 1
  pending = string.format("cd-%d-%d", id, counter)
  return wrk.format("POST", "/api/v1/vms",
    { ["Content-Type"] = "application/json", ["Authorization"] = token },
    '{"name":"' .. pending .. '","vcpus":1,"memory":"64M","image":"bench"}')
end

function response(status, headers, body)
  if status == 201 and pending then
    created = pending
  elseif status >= 300 then
    errors = errors + 1
    if errors <= 3 then
      io.stderr:write(string.format("status %d: %s\n", status, body))
    end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do
    total = total + t:get("errors")
  end
  io.write(string.format("failed_requests %d\n", total))
end
