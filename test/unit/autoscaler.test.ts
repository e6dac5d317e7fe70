/** The autoscaler's scaling rule (a pure function) and its option checks; the loop itself runs in test/distributed. */
import { describe, expect, test } from "bun:test";
import {
  afterScale,
  DEFAULT_POLICY,
  type Decision,
  decide,
  INITIAL_MEMORY,
  type Memory,
  p99FromBuckets,
  parseTurnBuckets,
  type Policy,
  type Sample,
  validatePolicy,
} from "../../scripts/cluster/autoscaler.ts";
import { renderHaproxyConfig } from "../../scripts/cluster/haproxy-config.ts";

const policy: Policy = { ...DEFAULT_POLICY, min: 2, max: 4, cooldownOutMs: 5000, cooldownInMs: 15_000 };

/** Feeds samples one after another (1 s apart from t=100 s), carrying the memory like the loop does. */
function feed(samples: ReadonlyArray<Omit<Sample, "at">>, memory: Memory = INITIAL_MEMORY, p = policy): Decision[] {
  const decisions: Decision[] = [];
  let current = memory;
  samples.forEach((sample, i) => {
    const decision = decide({ ...sample, at: 100_000 + i * 1000 }, p, current);
    current = decision.memory;
    decisions.push(decision);
  });
  return decisions;
}

const hot = { hosts: 2, cpu: 0.9, p99Ms: 5 };
const cold = { hosts: 3, cpu: 0.05, p99Ms: 2 };

describe("decide", () => {
  test("scales out after outSamples consecutive samples over the CPU threshold, not on one spike", () => {
    expect(feed([hot]).map((d) => d.action)).toEqual(["hold"]);
    expect(feed([hot, { ...hot, cpu: 0.3 }, hot]).map((d) => d.action)).toEqual(["hold", "hold", "hold"]);
    const decisions = feed([hot, hot]);
    expect(decisions.map((d) => d.action)).toEqual(["hold", "out"]);
    expect(decisions[1]?.reason).toContain("cpu >= 0.6");
  });

  test("latency over --p99-ms scales out even with low CPU; 0 turns the latency signal off", () => {
    const slow = { hosts: 2, cpu: 0.3, p99Ms: 80 };
    expect(feed([slow, slow], INITIAL_MEMORY, { ...policy, p99Ms: 50 }).at(-1)?.action).toBe("out");
    expect(feed([slow, slow], INITIAL_MEMORY, { ...policy, p99Ms: 50 }).at(-1)?.reason).toContain("p99 >= 50");
    expect(feed([slow, slow], INITIAL_MEMORY, { ...policy, p99Ms: 0 }).at(-1)?.action).toBe("hold");
  });

  test("never above max, never below min", () => {
    expect(
      feed([
        { ...hot, hosts: 4 },
        { ...hot, hosts: 4 },
      ]).at(-1),
    ).toMatchObject({ action: "hold" });
    expect(feed([{ ...hot, hosts: 4 }]).at(-1)?.reason).toContain("at the maximum 4");
    const idle = { hosts: 2, cpu: 0, p99Ms: undefined };
    expect(feed([idle, idle, idle, idle]).map((d) => d.action)).toEqual(["hold", "hold", "hold", "hold"]);
    // Outside the bounds (e.g. a host was removed by hand) it acts at once, without cooldown.
    const recent = afterScale(100_000);
    expect(feed([{ hosts: 1, cpu: 0, p99Ms: undefined }], recent)[0]?.action).toBe("out");
    expect(feed([{ hosts: 5, cpu: 0.9, p99Ms: 1 }], recent)[0]?.action).toBe("in");
  });

  test("scales in after inSamples cold samples and only when the others stay under the scale-out threshold", () => {
    expect(feed([cold, cold, cold]).map((d) => d.action)).toEqual(["hold", "hold", "in"]);
    // 0.2/host on 2 hosts would be 0.4 on 1: fine for max 0.6, but with min 1 and 0.35 -> 0.7: no.
    const p = { ...policy, min: 1, scaleInCpu: 0.4 };
    const borderline = { hosts: 2, cpu: 0.35, p99Ms: 3 };
    expect(feed([borderline, borderline, borderline], INITIAL_MEMORY, p).at(-1)?.action).toBe("hold");
    expect(feed([borderline, borderline, borderline], INITIAL_MEMORY, p).at(-1)?.reason).toContain("within thresholds");
  });

  test("a slow response time (when the latency signal is on) blocks scale-in", () => {
    const p = { ...policy, p99Ms: 50 };
    const lagging = { hosts: 3, cpu: 0.05, p99Ms: 30 };
    expect(feed([lagging, lagging, lagging], INITIAL_MEMORY, p).at(-1)?.action).toBe("hold");
    const quiet = { hosts: 3, cpu: 0.05, p99Ms: undefined };
    expect(feed([quiet, quiet, quiet], INITIAL_MEMORY, p).at(-1)?.action).toBe("in");
  });

  test("cooldowns count from the last scale event, out and in separately", () => {
    // Scaled 2 s ago (at 98 s): scale-out waits until 5 s have passed, scale-in until 15 s.
    const memory = afterScale(98_000);
    const out = feed([hot, hot, hot, hot, hot], memory);
    expect(out.map((d) => d.action)).toEqual(["hold", "hold", "hold", "out", "out"]);
    expect(out[2]?.reason).toContain("scale-out cooldown");
    const inn = feed(
      Array.from({ length: 16 }, () => cold),
      memory,
    );
    expect(inn.findIndex((d) => d.action === "in")).toBe(13); // at 113 s = 98 s + 15 s
    expect(inn[5]?.reason).toContain("scale-in cooldown");
  });

  test("afterScale restarts the streaks", () => {
    expect(afterScale(5)).toEqual({ lastScaleAt: 5, hotSamples: 0, coldSamples: 0 });
  });
});

describe("validatePolicy", () => {
  test("names the flag to fix", () => {
    expect(() => validatePolicy({ ...policy, max: 5 }, 4)).toThrow("--max-apps 5");
    expect(() => validatePolicy({ ...policy, min: 0 }, 4)).toThrow("--min");
    expect(() => validatePolicy({ ...policy, min: 3, max: 2 }, 4)).toThrow("--max must be");
    expect(() => validatePolicy({ ...policy, scaleInCpu: 0.7 }, 4)).toThrow("--scale-in-cpu");
    expect(() => validatePolicy({ ...policy, cooldownInMs: -1 }, 4)).toThrow("--cooldown-in-ms");
    expect(() => validatePolicy(policy, 4)).not.toThrow();
  });
});

test("spare HAProxy slots are rendered as disabled server lines", () => {
  const config = renderHaproxyConfig({
    servers: [
      { name: "app1", address: "10.0.0.11", port: 7017 },
      { name: "app2", address: "10.0.0.12", port: 7017, disabled: true },
    ],
  });
  expect(config).toContain("    server app1 10.0.0.11:7017\n");
  expect(config).toContain("    server app2 10.0.0.12:7017 disabled\n");
});

describe("p99 from the apps' histograms", () => {
  const scrape = (counts: number[]) =>
    ["0.001", "0.005", "0.025", "+Inf"]
      .map((le, i) => `turnomatic_http_request_duration_seconds_bucket{route="turno",le="${le}"} ${counts[i]}`)
      .concat(['turnomatic_http_request_duration_seconds_bucket{route="readyz",le="+Inf"} 999'])
      .join("\n");

  test("parses route=turno buckets only", () => {
    const buckets = parseTurnBuckets(scrape([10, 20, 30, 30]));
    expect([...buckets.entries()]).toEqual([
      [0.001, 10],
      [0.005, 20],
      [0.025, 30],
      [Number.POSITIVE_INFINITY, 30],
    ]);
  });

  test("is the upper bound of the bucket holding 99 % of the requests, undefined without requests", () => {
    expect(p99FromBuckets(parseTurnBuckets(scrape([990, 1000, 1000, 1000])))).toBe(1);
    expect(p99FromBuckets(parseTurnBuckets(scrape([900, 980, 1000, 1000])))).toBe(25);
    expect(p99FromBuckets(parseTurnBuckets(scrape([0, 0, 0, 10])))).toBe(Number.POSITIVE_INFINITY);
    expect(p99FromBuckets(parseTurnBuckets(scrape([0, 0, 0, 0])))).toBeUndefined();
  });
});
