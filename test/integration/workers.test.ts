/**
 * Supervisor mode: N worker processes on one port, restarted when they crash, draining together on
 * SIGTERM, and one host-wide /metrics that counts each worker once.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { Supervisor } from "../../src/cluster/supervisor.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/observability/logger.ts";
import { checkHistory, formatVerdict } from "../../harness/history-checker.ts";
import { waitFor } from "../../harness/ports.ts";
import { type ServiceProcess, startService } from "../../harness/service.ts";
import { readCounters, runTurnLoad } from "../../harness/turn-load.ts";

const FIXTURE = join(import.meta.dir, "../fixtures/metrics-worker.ts");

describe("supervisor metrics aggregation", () => {
  const lines: string[] = [];
  const logger = createLogger("info", {}, (line) => lines.push(line) > 0);
  const supervisor = new Supervisor({ ...loadConfig([], {}), workers: 2 }, logger, {
    command: [process.execPath, FIXTURE],
    restartInitialMs: 50,
  });
  afterAll(() => supervisor.stop("SIGTERM", 5000));

  test("a counter from 2 workers is summed, each worker counted once, also after a restart", async () => {
    supervisor.start();
    // Worker 0 adds 1, worker 1 adds 2: the host-wide value is 3, never 1, 2, or 6.
    await waitFor("both workers' metrics", async () =>
      (await supervisor.renderMetrics()).body.includes("turnomatic_test_ticks_total 3"),
    );
    const [first] = supervisor.pids;
    process.kill(first as number, "SIGKILL");
    await waitFor("the crashed worker restarted", () => supervisor.restarts === 1 && supervisor.pids.length === 2);
    expect(supervisor.pids).not.toContain(first as number);
    await waitFor("metrics after the restart", async () =>
      (await supervisor.renderMetrics()).body.includes("turnomatic_test_ticks_total 3"),
    );
    expect(lines.some((line) => line.includes('"event":"worker.restart"'))).toBe(true);
  });

  test("restart delays back off exponentially while a worker keeps crashing", async () => {
    const delays: number[] = [];
    for (let crash = 0; crash < 3; crash++) {
      const before = supervisor.restarts;
      const [pid] = supervisor.pids;
      process.kill(pid as number, "SIGKILL");
      await waitFor("restart", () => supervisor.restarts === before + 1 && supervisor.pids.length === 2, 10_000);
    }
    for (const line of lines) {
      const entry = JSON.parse(line) as { event?: string; delayMs?: number; worker?: number };
      if (entry.event === "worker.restart" && entry.worker === 0) delays.push(entry.delayMs ?? -1);
    }
    // Four crashes of worker 0 within its stability window: 50, 100, 200, 400 ms.
    expect(delays).toEqual([50, 100, 200, 400]);
  });
});

describe("turnomatic --workers 2", () => {
  let service: ServiceProcess;
  afterAll(() => service?.stop("SIGKILL"));

  test("serves from 2 workers on one port, restarts a killed worker, drains on SIGTERM and exits 0", async () => {
    service = await startService({ args: ["--workers", "2"], env: { TURNOMATIC_DRAIN_DELAY_MS: "200" } });
    await waitFor("2 workers started", () => (service.logs().match(/"event":"worker.start"/g) ?? []).length === 2);
    const ids = ["w-a", "w-b", "w-c"];
    const history = await runTurnLoad({ url: service.url, ids, clients: 16, requests: 3000 });
    const workerPids = [...service.logs().matchAll(/"event":"worker.start".*?"workerPid":(\d+)/g)].map((m) => Number(m[1]));
    expect(workerPids.length, service.logs()).toBe(2);
    process.kill(workerPids[0] as number, "SIGKILL");
    await waitFor("restart logged", () => service.logs().includes('"event":"worker.restart"'));
    await waitFor("3rd worker start", () => (service.logs().match(/"event":"worker.start"/g) ?? []).length === 3);
    history.push(...(await runTurnLoad({ url: service.url, ids, clients: 16, requests: 1000 })));
    const verdict = checkHistory(history, { after: await readCounters(service.url, ids) });
    expect(verdict.ok, formatVerdict(verdict)).toBe(true);
    expect(verdict.totals.failed).toBe(0);

    const metrics = await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`);
    expect(metrics.status).toBe(200);
    // The host-wide status page names the busiest ids with their current turn, merged from the workers.
    const status = (await (await fetch(`http://127.0.0.1:${service.metricsPort}/status.json`)).json()) as {
      busiest: Array<{ id: string; turno: number }>;
    };
    const finalCounters = await readCounters(service.url, ids);
    expect(status.busiest.map((entry) => entry.id).sort()).toEqual([...ids].sort());
    for (const entry of status.busiest) expect(entry.turno).toBe(finalCounters.get(entry.id) as number);

    expect(await service.stop("SIGTERM")).toBe(0);
    const logs = service.logs();
    // Each live worker drained on its own before the supervisor exited.
    expect((logs.match(/"event":"shutdown.done"/g) ?? []).length).toBe(2);
    expect(logs).toContain('"event":"supervisor.done"');
  });

  test("--workers 2 with the memory store is refused: the workers would not share counters", async () => {
    const child = Bun.spawn([process.execPath, join(import.meta.dir, "../../src/main.ts"), "--workers", "2"], {
      env: { ...process.env, TURNOMATIC_STORE: "memory:", PORT: "0", METRICS_PORT: "0" },
      stderr: "pipe",
      stdout: "ignore",
    });
    expect(await child.exited).toBe(2);
    expect(await new Response(child.stderr).text()).toContain("needs a store the workers share");
  });
});
