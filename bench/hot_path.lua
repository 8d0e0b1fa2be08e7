-- wrk script for bench/run: a hot path, authenticated, chosen by $BENCH_PATH:
--   list    GET /v1/user-api-keys?UserId=<the caller itself>   (the default)
--   verify  GET /v1/auth                                        (verification)
-- spread over every caller key in the file named by $BENCH_CALLERS (lines
-- "tenant<TAB>user_id<TAB>secret", written by bench/seed.py).
--
-- The requests are formatted once per thread; request() only hands them out, so
-- wrk spends its CPU on the network, not in Lua. There is no response()
-- callback for the same reason: wrk itself counts statuses above 399
-- (summary.errors.status, its "Non-2xx or 3xx responses" line) and socket errors.
--
-- done() prints one machine-readable line that bench/run parses:
--   BENCH requests=N rps=R p50_us=A p99_us=B non2xx=C socket_errors=D

local requests = {}
local next_request = 1
local thread_count = 0

local function load_callers()
  local path = os.getenv("BENCH_CALLERS")
  assert(path, "BENCH_CALLERS is not set")
  local callers = {}
  for line in io.lines(path) do
    local tenant, user_id, secret = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
    assert(tenant, "malformed line in " .. path)
    callers[#callers + 1] = { tenant = tenant, user_id = user_id, secret = secret }
  end
  assert(#callers > 0, path .. " names no caller")
  return callers
end

-- Runs in the main Lua state, once per thread: give each thread its own number
-- so that the threads start at different callers.
function setup(thread)
  thread:set("thread_number", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  local verify = os.getenv("BENCH_PATH") == "verify"
  for _, c in ipairs(load_callers()) do
    local path = verify and "/v1/auth" or ("/v1/user-api-keys?UserId=" .. c.user_id)
    requests[#requests + 1] = wrk.format("GET", path, { ["tenant"] = c.tenant, ["x-key"] = c.secret })
  end
  next_request = ((thread_number or 0) * 7919) % #requests + 1
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end

-- BENCH_DELAY_MS set: each connection waits that long after an answer before
-- its next request, so keyward and the ceiling can be given the same load
-- (bench/run's paced pass) instead of each as much as it takes.
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pause then
  function delay()
    return pause
  end
end

function done(summary, latency, _)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
