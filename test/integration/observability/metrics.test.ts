/**
 * The metrics: docs/reference/metrics.md lists exactly the registry's turnomatic_* metrics; the hooks count
 * what they should; no id label exists; and merging two workers' registries with AggregatorRegistry
 * (what the multi-worker supervisor does) gives host-wide values: counters add up, "highest" gauges
 * take the max, store_up the min.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { AggregatorRegistry, Registry } from "prom-client";
import { EVENTS } from "../../../src/domain/events.ts";
import { MAX_TURNO } from "../../../src/domain/limits.ts";
import { BusyIds } from "../../../src/observability/busy-ids.ts";
import { Coalescer } from "../../../src/allocation/coalescer.ts";
import { registerLedgerMetrics } from "../../../src/observability/ledger-metrics.ts";
import { createMetrics } from "../../../src/observability/metrics.ts";
import { createStoreMetrics } from "../../../src/observability/store-metrics.ts";
import { MemoryStore } from "../../../src/stores/memory-store.ts";
import { buildStatus, type MetricJson } from "../../../src/observability/status.ts";

const DOC = readFileSync(join(import.meta.dir, "../../../docs/reference/metrics.md"), "utf8");

// The registry and what registers in it, as main.ts builds them.
const registry = new Registry();
createStoreMetrics(registry);
let storeAnswers = true;
createMetrics(registry, {
  waiting: () => 7,
  ping: async () => {
    if (!storeAnswers) throw new Error("store down");
  },
  version: "test",
});

// The ledger and guard metrics over a memory store with a known ledger.
const ledgerStore = new MemoryStore();
await ledgerStore.reserve({ id: "l", n: 5 });
await ledgerStore.report(new Map([["l", 3]]));
registerLedgerMetrics(registry, {
  totals: () => ledgerStore.totals(),
  guard: () => ({ status: "ok", marker: { uid: "u", generation: 1, recovered: false, floor: 0, halted: undefined } }),
  coalescer: new Coalescer(ledgerStore, { deadlineMs: 100, maxBatch: 10, maxWaitingPerId: 10, maxWaiting: 10, fencing: true }),
});

async function json(): Promise<MetricJson[]> {
  return (await registry.getMetricsAsJSON()) as unknown as MetricJson[];
}
function value(all: MetricJson[], name: string, labels: Record<string, string> = {}): number | undefined {
  const metric = all.find((m) => m.name === name);
  return metric?.values.find((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))?.value;
}

describe("metrics", () => {
  test("docs/reference/metrics.md lists exactly the turnomatic_* metrics of the registry", async () => {
    const documented = new Set([...DOC.matchAll(/^\| `(turnomatic_\w+)`/gm)].map((m) => m[1]));
    const registered = new Set((await json()).map((m) => m.name).filter((name) => name.startsWith("turnomatic_")));
    expect([...registered].sort()).toEqual([...documented].sort() as string[]);
  });

  test("the store-wide ledger is read from the store's own totals", async () => {
    const all = await json();
    expect(value(all, "turnomatic_store_numbers_issued")).toBe(5);
    expect(value(all, "turnomatic_store_numbers_delivered")).toBe(3);
    expect(value(all, "turnomatic_store_numbers_lost")).toBe(2);
    expect(value(all, "turnomatic_store_refusing")).toBe(0);
  });

  test("no metric is labelled by id, and the default process metrics work on Bun", async () => {
    const all = await json();
    for (const metric of all) for (const v of metric.values) expect(Object.keys(v.labels)).not.toContain("id");
    expect(value(all, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(value(all, "process_resident_memory_bytes")).toBeGreaterThan(0);
  });

  test("the core's events count responses, batches, store time and events", async () => {
    const t0 = performance.now();
    EVENTS.response.publish({ route: "turno", method: "POST", status: 200, startedAt: t0 });
    EVENTS.response.publish({ route: "turno", method: "POST", status: 200, startedAt: t0 });
    EVENTS.response.publish({ route: "turno", method: "POST", status: 503, startedAt: t0 });
    EVENTS.response.publish({ route: "not_found", method: "BREW", status: 405, startedAt: t0 });
    EVENTS.reservation.publish({ id: "a", numbers: 5, storeSeconds: 0.0004, outcome: "ok" });
    EVENTS.reservation.publish({ id: "a", numbers: 2, storeSeconds: 0.3, outcome: "error" });
    EVENTS.abandoned.publish({ count: 2 });
    EVENTS.inDoubt.publish({ count: 2 });
    EVENTS.fence.publish({ id: "a", floor: 10 });
    EVENTS.overload.publish({});
    EVENTS.timeout.publish({ count: 3 });
    EVENTS.issued.publish({ id: "a", last: Math.floor(MAX_TURNO * 0.95) });
    const all = await json();
    expect(value(all, "turnomatic_http_requests_total", { route: "turno", method: "POST", code: "200" })).toBe(2);
    expect(value(all, "turnomatic_http_requests_total", { route: "turno", method: "POST", code: "503" })).toBe(1);
    expect(value(all, "turnomatic_http_requests_total", { route: "not_found", method: "other", code: "405" })).toBe(1);
    expect(value(all, "turnomatic_http_request_duration_seconds", { route: "turno", le: "+Inf" })).toBe(3);
    expect(value(all, "turnomatic_batch_size", { le: "4" })).toBe(1); // the batch of 2
    expect(value(all, "turnomatic_batch_size", { le: "8" })).toBe(2);
    expect(value(all, "turnomatic_store_round_trip_seconds", { outcome: "ok", le: "0.0005" })).toBe(1);
    expect(value(all, "turnomatic_store_round_trip_seconds", { outcome: "error", le: "0.25" })).toBe(0);
    expect(value(all, "turnomatic_store_errors_total")).toBe(1);
    expect(value(all, "turnomatic_numbers_abandoned_total")).toBe(2);
    expect(value(all, "turnomatic_numbers_in_doubt_total")).toBe(2);
    expect(value(all, "turnomatic_rollback_fences_total")).toBe(1);
    expect(value(all, "turnomatic_overload_rejections_total")).toBe(1);
    expect(value(all, "turnomatic_deadline_timeouts_total")).toBe(3);
    expect(value(all, "turnomatic_highest_turno_ratio")).toBeCloseTo(0.95, 6);
    expect(value(all, "turnomatic_ids_near_exhaustion")).toBe(1);
    expect(value(all, "turnomatic_waiting_requests")).toBe(7);
    expect(value(all, "turnomatic_store_up")).toBe(1);
    expect(value(all, "turnomatic_build_info", { version: "test" })).toBe(1);
  });

  test("two workers merged by AggregatorRegistry give host-wide values", async () => {
    const workerA = await json();
    storeAnswers = false; // worker B's store does not answer
    EVENTS.issued.publish({ id: "b", last: 5 });
    const workerB = await json();
    storeAnswers = true;
    const merged = (await AggregatorRegistry.aggregate([
      workerA,
      workerB,
    ] as never).getMetricsAsJSON()) as unknown as MetricJson[];
    const a = (name: string, labels?: Record<string, string>) => value(workerA, name, labels) ?? 0;
    const b = (name: string, labels?: Record<string, string>) => value(workerB, name, labels) ?? 0;
    const labels = { route: "turno", method: "POST", code: "200" };
    expect(value(merged, "turnomatic_http_requests_total", labels)).toBe(a("turnomatic_http_requests_total", labels) * 2);
    expect(value(merged, "turnomatic_batch_size", { le: "8" })).toBe(a("turnomatic_batch_size", { le: "8" }) * 2);
    expect(value(merged, "turnomatic_workers")).toBe(2);
    expect(value(merged, "turnomatic_waiting_requests")).toBe(14);
    expect(value(merged, "turnomatic_store_up")).toBe(0); // min: one worker cannot reach the store
    expect(value(merged, "turnomatic_highest_turno_ratio")).toBe(
      Math.max(a("turnomatic_highest_turno_ratio"), b("turnomatic_highest_turno_ratio")),
    );
    expect(value(merged, "turnomatic_build_info", { version: "test" })).toBe(1);
    expect(value(merged, "process_cpu_seconds_total")).toBeCloseTo(
      a("process_cpu_seconds_total") + b("process_cpu_seconds_total"),
      6,
    );
    // The status page reads merged JSON the same way.
    const status = buildStatus(merged, []);
    expect(status.workers).toBe(2);
    expect(status.storeUp).toBe(false);
    expect(status.turns.total).toBe(a("turnomatic_http_request_duration_seconds", { route: "turno", le: "+Inf" }) * 2);
  });

  test("a second registry in the same process has metrics of its own, which stop counting at close", async () => {
    const other = new Registry();
    const metrics = createMetrics(other, { waiting: () => 3, ping: async () => undefined, version: "other" });
    const read = async () => (await other.getMetricsAsJSON()) as unknown as MetricJson[];
    EVENTS.overload.publish({});
    metrics.close();
    EVENTS.overload.publish({});
    const mine = await read();
    expect(value(mine, "turnomatic_waiting_requests")).toBe(3);
    expect(value(mine, "turnomatic_build_info", { version: "other" })).toBe(1);
    expect(value(mine, "turnomatic_overload_rejections_total")).toBe(1);
    expect(value(await json(), "turnomatic_waiting_requests")).toBe(7);
    expect(value(await json(), "turnomatic_build_info", { version: "other" })).toBeUndefined();
  });
});

describe("busy ids", () => {
  test("ranks ids by numbers issued recently and stays bounded", () => {
    const busy = new BusyIds({ capacity: 3, windowMs: 60_000 });
    busy.record("a", 10);
    busy.record("b", 1);
    busy.record("a", 50);
    busy.record("c", 1);
    busy.record("d", 1); // over capacity: not tracked
    const top = busy.top(10);
    expect(top.map((entry) => entry.id)).toEqual(["a", "b", "c"]);
    expect(top[0]?.turno).toBe(50);
    expect(busy.highest).toBe(50);
  });
});
