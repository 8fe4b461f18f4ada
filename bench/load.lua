-- wrk script: the request comes from the environment, the summary goes out as one JSON line.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.body = os.getenv("BENCH_BODY")
if wrk.body == "" then wrk.body = nil end
local cookie = os.getenv("BENCH_COOKIE") or ""
if cookie ~= "" then wrk.headers["Cookie"] = cookie end
if wrk.body then wrk.headers["Content-Type"] = "application/json" end
wrk.headers["Accept"] = "application/json"

-- Many users: one cookie per line of BENCH_COOKIES, each request the next user's.
local cookies_file = os.getenv("BENCH_COOKIES") or ""
if cookies_file ~= "" then
  local cookies = {}
  for line in io.lines(cookies_file) do cookies[#cookies + 1] = line end
  local turn = 0
  request = function()
    turn = turn % #cookies + 1
    wrk.headers["Cookie"] = cookies[turn]
    return wrk.format()
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
