-- wrk script: each connection waits PACE_MS (default 10) before each request, so wrk offers a
-- fixed load (connections x 1000 / PACE_MS requests per second) instead of saturating the
-- server; the latency it reports is then the service time under that load.
local pace = tonumber(os.getenv("PACE_MS") or "10")

function delay()
  return pace
end
