-- Cycles through request bodies read from a file (one JSON document per line),
-- so a run sends a mix of held-out rows rather than one row again and again.
-- Prints one JSON summary line at the end for the caller to parse.
--   BODIES=rows.jsonl wrk -s loadtest/wrk/bodies.lua --latency http://host/path

local bodies = {}
local index = 0

function init(args)
  for line in io.lines(os.getenv("BODIES")) do
    bodies[#bodies + 1] = line
  end
  -- threads start at different rows
  index = math.random(#bodies)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  index = index % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[index])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, ' ..
    '"socket_errors": %d, "p50_us": %d, "p99_us": %d, "max_us": %d}\n',
    summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
