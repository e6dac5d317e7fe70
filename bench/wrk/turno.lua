-- wrk script for the benchmarks: GET /turno/<id>, with IDS ids (1 = one hot id "hot"), and a JSON
-- summary line at the end that bench/run.ts parses (errors include non-2xx/3xx statuses).
local ids = tonumber(os.getenv("IDS") or "1")
local paths = {}
if ids <= 1 then
  paths[1] = "/turno/hot"
else
  for i = 1, ids do paths[i] = "/turno/b" .. i end
end
local count = #paths

request = function()
  return wrk.format("GET", paths[math.random(count)])
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,"errors":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.status + e.timeout))
end
