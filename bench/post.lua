-- wrk script for bench/coldstart.py: POST the JSON body in $WRK_BODY_FILE to the
-- URL on every request, then print one machine-readable summary line.
-- Usage: WRK_BODY_FILE=body.json wrk -t2 -c16 -d10s -s bench/post.lua URL

-- Top-level code runs in every wrk thread before its first request, so each
-- thread sends the same body; reading it here keeps large bodies off the
-- command line.
local path = os.getenv("WRK_BODY_FILE")
if path == nil or path == "" then
  error("WRK_BODY_FILE must name the JSON body to POST")
end
local file = io.open(path, "rb")
if file == nil then
  error("WRK_BODY_FILE " .. path .. " cannot be read")
end
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"

-- Called once after the run. wrk's own report is for people; this line is for
-- coldstart.py, which fails the run unless every error count is 0.
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d, "latency_p50_us": %d, ' ..
    '"latency_p99_us": %d}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
