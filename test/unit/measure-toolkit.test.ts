/** The measurement toolkit's parsers and statistics (bench/toolkit), on fixed inputs. */
import { expect, test } from "bun:test";
import { createHistogram, encodeHistogram, histogramPercentiles, mergeHistograms, recordMs } from "../../bench/toolkit/hdr.ts";
import { procCpuSeconds } from "../../bench/toolkit/proc.ts";
import { commandCalls, parseInfo, redisCpuSeconds, redisWork } from "../../bench/toolkit/redis-info.ts";
import { median, percentiles } from "../../bench/toolkit/stats.ts";
import { parseWrkOutput } from "../../bench/toolkit/wrk.ts";
import { parseHttperf } from "../../loadtest/tools/httperf.ts";

test("median of odd and even counts; NaN when empty", () => {
  expect(median([3, 1, 2])).toBe(2);
  expect(median([4, 1, 3, 2])).toBe(2.5);
  expect(median([])).toBeNaN();
  expect(percentiles([1, 2, 3, 4]).p50).toBe(2);
});

test("HDR histograms merged across workers keep percentiles to 3 significant digits", () => {
  const a = createHistogram();
  const b = createHistogram();
  for (let i = 1; i <= 500; i++) recordMs(a, i / 100);
  for (let i = 501; i <= 1000; i++) recordMs(b, i / 100);
  const total = mergeHistograms([encodeHistogram(a), encodeHistogram(b)]);
  const p = histogramPercentiles(total);
  expect(p.p50).toBeCloseTo(5, 1);
  expect(p.p99).toBeCloseTo(9.9, 1);
  expect(p.max).toBeCloseTo(10, 1);
});

test("Redis INFO: CPU seconds, calls per command, client round trips without our housekeeping", () => {
  const info =
    "# CPU\r\nused_cpu_sys:1.50\r\nused_cpu_user:2.25\r\n# Commandstats\r\n" +
    "cmdstat_evalsha:calls=40,usec=100,usec_per_call=2.5\r\ncmdstat_hincrby:calls=40,usec=1\r\n" +
    "cmdstat_info:calls=3,usec=1\r\ncmdstat_config|resetstat:calls=1,usec=1\r\n";
  expect(parseInfo(info).get("used_cpu_user")).toBe("2.25");
  expect(redisCpuSeconds(info)).toBe(3.75);
  expect(commandCalls(info).get("evalsha")).toBe(40);
  expect(redisWork(info)).toEqual({ calls: 80, roundTrips: 40 });
});

test("wrk's summary line from turno.lua", () => {
  const s = parseWrkOutput(
    'noise\nTURNOMATIC_WRK {"requests":1000,"duration_us":2000000,"connect":0,"read":1,"write":0,"status":2,"timeout":3,"p50":500,"p90":900,"p99":1500,"p999":2500,"max":4000,"mean":600.5,"bad_shape":0,"not_ok":0,"first_bad":""}\n',
  );
  expect(s.requests).toBe(1000);
  expect(s.latencyMs.p99).toBe(1.5);
  expect(s.errors.timeout).toBe(3);
  expect(s.statusErrors).toBe(2);
});

test("httperf's summary and lifetime histogram", () => {
  const out = `Connection lifetime histogram (time in ms):
             0.5 90
             1.5 9
             4.5 1

Total: connections 100 requests 100 replies 100 test-duration 1.000 s
Connection time [ms]: min 0.1 avg 0.7 max 4.9 median 0.5 stddev 0.5
Reply status: 1xx=0 2xx=99 3xx=0 4xx=1 5xx=0
CPU time [s]: user 0.14 system 0.57 (user 14.5% system 57.5% total 72.0%)
Errors: total 0 client-timo 0 socket-timo 0 connrefused 0 connreset 0
`;
  const s = parseHttperf(out);
  expect([s.requests, s.replies, s.status["2xx"], s.status["4xx"], s.errors]).toEqual([100, 100, 99, 1, 0]);
  expect(s.latencyMs.p50).toBe(1);
  expect(s.latencyMs.p99).toBe(2);
  expect(s.latencyMs.p999).toBe(5);
  expect(s.cpuPercent).toBe(72);
});

test("/proc CPU of this process grows with work", () => {
  const before = procCpuSeconds(process.pid);
  const until = performance.now() + 120;
  while (performance.now() < until) Math.sqrt(Math.random());
  expect(procCpuSeconds(process.pid)).toBeGreaterThan(before);
});
