/**
 * Chaos: the Redis server dies under load (kill -9) and comes back.
 * - With AOF (appendfsync always) it comes back with every acknowledged number: zero duplicates and
 *   no rollback fence needed.
 * - Without persistence it comes back empty: the service must refuse (TURNO_ERR_STORE_LOST) from the
 *   first turn after the restart instead of re-issuing, until an operator recovers the store with a
 *   floor; then it resumes above the floor. Negative control: a service with no record of the store
 *   (a fresh state folder: the documented undetectable case) started after the empty restart
 *   re-issues, and the checker must catch it.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { type RedisProcess, startRedis } from "../../harness/redis-server.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkHistory } from "../../harness/history-checker.ts";
import { adminHeaders, type ServiceProcess, startService } from "../../harness/service.ts";
import { runTurnLoad } from "../../harness/turn-load.ts";
import { countFences, expectVerdictOk, FULL, figures, runChaos } from "./chaos-run.ts";

const IDS = ["k0", "k1", "k2", "k3", "k4"];
const CYCLES = FULL ? 5 : 1;
const DOWN_MS = FULL ? 2000 : 500;

const stateDirs: string[] = [];
function stateDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-chaos-state-"));
  stateDirs.push(dir);
  return dir;
}

let redis: RedisProcess | undefined;
let service: ServiceProcess | undefined;
afterEach(async () => {
  await service?.stop("SIGKILL");
  await redis?.stop();
  service = undefined;
  redis = undefined;
  for (const dir of stateDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

async function killAndRestartUnderLoad(server: RedisProcess, url: string) {
  return runChaos({
    url,
    ids: IDS,
    clients: 40,
    warmupMs: FULL ? 3000 : 1000,
    tailMs: FULL ? 3000 : 1500,
    faults: async (mark) => {
      for (let cycle = 0; cycle < CYCLES; cycle++) {
        mark(cycle === 0 ? "fault" : `fault:${cycle}`);
        await server.kill();
        await Bun.sleep(DOWN_MS);
        await server.restart();
        await Bun.sleep(FULL ? 3000 : 1000);
      }
    },
  });
}

describe("chaos: Redis killed and restarted under load", () => {
  test("AOF appendfsync always: zero duplicates, no fence needed", async () => {
    redis = await startRedis({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
    service = await startService({ store: redis.url });
    const result = await killAndRestartUnderLoad(redis, service.url);
    const f = figures("redis-aof-kill-9", result, "fault");
    expectVerdictOk(result);
    expect(f.duplicates).toBe(0);
    expect(f.failed).toBeGreaterThan(0); // the kill was felt, or the test proves nothing
    expect(f.issued).toBeGreaterThan(500);
    expect(countFences(service.logs())).toBe(0);
  });

  test("no persistence: restarted empty, every turn refused (never re-issued); recovery resumes above the floor", async () => {
    redis = await startRedis();
    service = await startService({ store: redis.url, stateDir: stateDir() });
    const result = await killAndRestartUnderLoad(redis, service.url);
    const f = figures("redis-empty-restart", result, "fault");
    expect(f.duplicates).toBe(0);
    expect(result.failures.get("TURNO_ERR_STORE_LOST")?.count ?? 0).toBeGreaterThan(0);
    expect(service.logs()).toContain('"event":"store.refusing"');
    const floor = Math.max(...result.history.map((entry) => entry.turno ?? 0));
    const recovered = await fetch(`${service.url}/admin/store/recover`, {
      method: "POST",
      headers: adminHeaders(),
      body: JSON.stringify({ floor }),
    });
    expect(recovered.status).toBe(200);
    const after = await runTurnLoad({ url: service.url, ids: IDS, clients: 20, requests: 500 });
    expect(Math.min(...after.map((entry) => entry.turno ?? Number.POSITIVE_INFINITY))).toBe(floor + 1);
    const verdict = checkHistory([...result.history, ...after], { faults: true });
    expect(verdict.totals.duplicates).toBe(0);
  });

  test("negative control: a service with no record of the store, started after the empty restart, re-issues", async () => {
    redis = await startRedis();
    service = await startService({ store: redis.url, stateDir: stateDir() });
    const before = await runTurnLoad({ url: service.url, ids: IDS, clients: 20, requests: 500 });
    await service.stop();
    await redis.kill();
    await redis.restart();
    service = await startService({ store: redis.url, stateDir: stateDir() });
    const after = await runTurnLoad({ url: service.url, ids: IDS, clients: 20, requests: 500 });
    // The checker must catch it: the proof that the refusal above is what prevents duplicates.
    const verdict = checkHistory([...before, ...after], { faults: true });
    expect(verdict.ok).toBe(false);
    expect(verdict.totals.duplicates).toBeGreaterThan(0);
  });
});
