/**
 * Chaos: the Redis server dies under load (kill -9) and comes back.
 * - With AOF (appendfsync always) it comes back with every acknowledged number: zero duplicates and
 *   no rollback fence needed.
 * - Without persistence it comes back empty: rollback fencing must keep the running service from
 *   re-issuing; the same run with fencing off must show duplicates (negative control).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { type RedisProcess, startRedis } from "../helpers/redis-server.ts";
import { type ServiceProcess, startService } from "../helpers/service.ts";
import { countFences, expectVerdictOk, FULL, figures, runChaos } from "./chaos-run.ts";

const IDS = ["k0", "k1", "k2", "k3", "k4"];
const CYCLES = FULL ? 5 : 1;
const DOWN_MS = FULL ? 2000 : 500;

let redis: RedisProcess | undefined;
let service: ServiceProcess | undefined;
afterEach(async () => {
  await service?.stop("SIGKILL");
  await redis?.stop();
  service = undefined;
  redis = undefined;
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

  test("no persistence, fencing on: restarted empty, zero duplicates (fenced forward)", async () => {
    redis = await startRedis();
    service = await startService({ store: redis.url, env: { TURNOMATIC_FENCING: "true" } });
    const result = await killAndRestartUnderLoad(redis, service.url);
    const f = figures("redis-empty-restart-fencing-on", result, "fault");
    expectVerdictOk(result);
    expect(f.duplicates).toBe(0);
    expect(countFences(service.logs())).toBeGreaterThanOrEqual(IDS.length);
  });

  test("negative control: the same run with fencing off re-issues numbers", async () => {
    redis = await startRedis();
    service = await startService({ store: redis.url, env: { TURNOMATIC_FENCING: "false" } });
    const result = await killAndRestartUnderLoad(redis, service.url);
    const f = figures("redis-empty-restart-fencing-off", result, "fault");
    // The checker must catch it: this is the proof that the fencing-on run could have failed.
    expect(result.verdict.ok).toBe(false);
    expect(f.duplicates).toBeGreaterThan(0);
    expect(countFences(service.logs())).toBe(0);
  });
});
