/**
 * Durability across restarts: numbers issued before a restart (graceful or kill -9) are never issued
 * again, for SQLite and for Redis with AOF (appendfsync always).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkHistory, formatVerdict, type HistoryEntry } from "../../harness/history-checker.ts";
import { type RedisProcess, startRedis } from "../../harness/redis-server.ts";
import { startService } from "../../harness/service.ts";
import { readCounters, runTurnLoad } from "../../harness/turn-load.ts";

const IDS = ["r0", "r1", "r2"];

async function loadThenRestartTwice(store: string, beforeSecondPhase?: () => Promise<void>): Promise<void> {
  const history: HistoryEntry[] = [];
  let service = await startService({ store });
  history.push(...(await runTurnLoad({ url: service.url, ids: IDS, clients: 50, requests: 2000 })));
  // Kill -9 while requests are in flight: those may fail, none may be duplicated later.
  const inFlight = runTurnLoad({ url: service.url, ids: IDS, clients: 50, requests: 2000, timeoutMs: 2000 });
  await Bun.sleep(50);
  await service.stop("SIGKILL");
  history.push(...(await inFlight));
  await beforeSecondPhase?.();
  service = await startService({ store });
  history.push(...(await runTurnLoad({ url: service.url, ids: IDS, clients: 50, requests: 2000 })));
  await service.stop("SIGTERM");
  service = await startService({ store });
  history.push(...(await runTurnLoad({ url: service.url, ids: IDS, clients: 50, requests: 1000 })));
  const after = await readCounters(service.url, IDS);
  await service.stop();
  const verdict = checkHistory(history, { faults: true, after });
  if (!verdict.ok) throw new Error(formatVerdict(verdict));
  expect(verdict.totals.duplicates).toBe(0);
  expect(verdict.totals.issued).toBeGreaterThan(5000);
}

describe("restart durability", () => {
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-restart-"));
  let redis: RedisProcess | undefined;
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    await redis?.stop();
  });

  test("SQLite: kill -9 and graceful restarts never re-issue", async () => {
    await loadThenRestartTwice(`sqlite:${join(dir, "restart.db")}`);
  });

  test("Redis with AOF always: service and Redis killed (-9) and restarted never re-issue", async () => {
    redis = await startRedis({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
    const server = redis;
    await loadThenRestartTwice(server.url, async () => {
      await server.kill();
      await server.restart();
    });
  });
});
