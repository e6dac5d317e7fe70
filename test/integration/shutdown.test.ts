import { expect, test } from "bun:test";
import { checkHistory, formatVerdict } from "../../harness/history-checker.ts";
import { startService } from "../../harness/service.ts";
import { readCounters, runTurnLoad } from "../../harness/turn-load.ts";

test("SIGTERM: readyz turns 503, in-flight requests finish, every reserved number is delivered, exit 0", async () => {
  const service = await startService({ env: { TURNOMATIC_DRAIN_DELAY_MS: "600" } });
  const load = runTurnLoad({
    url: service.url,
    ids: ["s"],
    clients: 64,
    requests: 1_000_000,
    maxDurationMs: 500,
    timeoutMs: 3000,
  });
  await Bun.sleep(100);
  service.process.kill("SIGTERM");
  await Bun.sleep(100);
  const ready = await fetch(`${service.url}/readyz`);
  expect(ready.status).toBe(503);
  expect(await ready.json()).toMatchObject({ status: "draining" });
  const history = await load;
  const exitCode = await service.process.exited;
  expect(exitCode).toBe(0);
  // During the drain delay every request was still served: no failure at all.
  const failures = history.filter((entry) => entry.status !== 200);
  expect(failures.length).toBe(0);
  const verdict = checkHistory(history);
  if (!verdict.ok) throw new Error(formatVerdict(verdict));
  expect(service.logs()).toContain('"event":"shutdown.done"');
  expect(service.logs()).toContain('"abandoned":0');
});

test("SIGTERM with the counters on disk: the next process continues where it stopped", async () => {
  const { mkdtempSync } = await import("node:fs");
  const { tmpdir } = await import("node:os");
  const { join } = await import("node:path");
  const store = `sqlite:${join(mkdtempSync(join(tmpdir(), "turnomatic-shutdown-")), "t.db")}`;
  const first = await startService({ store });
  await runTurnLoad({ url: first.url, ids: ["t"], clients: 20, requests: 500 });
  expect(await first.stop("SIGTERM")).toBe(0);
  const second = await startService({ store });
  expect((await readCounters(second.url, ["t"])).get("t")).toBe(500);
  await second.stop();
});
