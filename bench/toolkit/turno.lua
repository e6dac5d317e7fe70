-- wrk script for Turnomatic: picks an id per request (hot | uniform | zipf), and with verify on,
-- checks every response (status, Content-Type, Cache-Control, body {"id":"..","turno":n}) and
-- records each (id, turno) in a file per thread, which bench/toolkit/wrk.ts reads for the history
-- checker (uniqueness, gaps against the counters read afterwards, range). wrk gives a script no
-- per-request timings, so real-time order (I3) is judged by turnoload, not here.
--
-- Arguments after `--`: ids dist prefix outdir verify(0|1) keyed(0|1) count
-- keyed: every request is a POST with a fresh Idempotency-Key (the exactly-once client's request).
-- count: above 1, every request is a batch turn POST /turno/:id?count=<count> (verify checks single
-- turns only).
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local count, dist, prefix, outdir, verify, keyed, batch
local sent = 0
local cdf, total
local out
local buffered = {}
bad_shape = 0
not_ok = 0
pending = {}
first_bad = ""

function init(args)
  count = tonumber(args[1]) or 1
  dist = args[2] or "uniform"
  prefix = args[3] or "wrk-"
  outdir = args[4] or "/tmp"
  verify = args[5] == "1"
  keyed = args[6] == "1"
  batch = tonumber(args[7]) or 1
  math.randomseed(os.time() * 1000 + tid * 7919)
  keyprefix = tid .. "-" .. math.random(1, 1000000000) .. "-"
  if dist == "zipf" then
    cdf, total = {}, 0
    for k = 1, count do
      total = total + 1 / (k ^ 1.1)
      cdf[k] = total
    end
  end
  if verify then
    out_path = outdir .. "/thread-" .. tid .. ".txt"
    out = assert(io.open(out_path, "w"))
  else
    -- wrk parses headers and bodies for a script only when it has response(): without verify,
    -- none, so a plain throughput run costs wrk no more than a run without a script.
    response = nil
  end
end

local function pick()
  if count == 1 then return 0 end
  if dist == "hot" then
    if math.random() < 0.9 then return 0 end
    return math.random(0, count - 1)
  elseif dist == "zipf" then
    local u = math.random() * total
    local lo, hi = 1, count
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if cdf[mid] < u then lo = mid + 1 else hi = mid end
    end
    return lo - 1
  end
  return math.random(0, count - 1)
end

function request()
  if batch > 1 then
    local path = "/turno/" .. prefix .. pick() .. "?count=" .. batch
    if keyed then
      sent = sent + 1
      return wrk.format("POST", path, { ["Idempotency-Key"] = keyprefix .. sent })
    end
    return wrk.format("POST", path)
  end
  if keyed then
    sent = sent + 1
    return wrk.format("POST", "/turno/" .. prefix .. pick(), { ["Idempotency-Key"] = keyprefix .. sent })
  end
  return wrk.format("GET", "/turno/" .. prefix .. pick())
end

local function header(headers, name)
  for k, v in pairs(headers) do
    if string.lower(k) == name then return v end
  end
  return nil
end

local function flush()
  if #buffered > 0 then
    out:write(table.concat(buffered, "\n"), "\n")
    out:flush()
    buffered = {}
  end
end

function response(status, headers, body)
  if not verify then return end
  if status ~= 200 then
    not_ok = not_ok + 1
    return
  end
  local id, turno = string.match(body, '^{"id":"([%w_%-]+)","turno":(%d+)}$')
  local ctype = header(headers, "content-type") or ""
  local cache = header(headers, "cache-control") or ""
  if id == nil or string.sub(id, 1, #prefix) ~= prefix or string.find(ctype, "application/json", 1, true) ~= 1
    or not string.find(cache, "no-store", 1, true) then
    bad_shape = bad_shape + 1
    if first_bad == "" then first_bad = string.sub(body, 1, 120) .. " (" .. ctype .. "; " .. cache .. ")" end
    return
  end
  buffered[#buffered + 1] = id .. " " .. turno
  if #buffered >= 2000 then flush() end
  pending = buffered
end

function done(summary, latency, requests)
  local shape, status_bad, first = 0, 0, ""
  for _, thread in ipairs(threads) do
    shape = shape + (thread:get("bad_shape") or 0)
    status_bad = status_bad + (thread:get("not_ok") or 0)
    if first == "" then first = thread:get("first_bad") or "" end
    -- done() runs in the main Lua state, where init() never ran: read the thread's own settings
    local file = thread:get("out_path")
    if file ~= nil then
      -- the last, unflushed records of each thread, copied out of its Lua state
      local rest = thread:get("pending") or {}
      local f = assert(io.open(file, "a"))
      if #rest > 0 then f:write(table.concat(rest, "\n"), "\n") end
      f:close()
    end
  end
  local e = summary.errors
  io.write(string.format(
    'TURNOMATIC_WRK {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%f,"bad_shape":%d,"not_ok":%d,"first_bad":"%s"}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, shape, status_bad, (string.gsub(first, '[%c"\\]', '?'))))
end
