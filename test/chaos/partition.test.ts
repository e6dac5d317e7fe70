/**
 * Chaos: the network between the service and Redis fails (a fault proxy in between).
 * - Blackhole (packets held, as in a partition): every request waiting meanwhile gets a 503 within
 *   the deadline, none hangs; after the heal the held commands arrive late (their numbers are
 *   skipped, counted) and service resumes; zero duplicates.
 * - Reset (connections cut): reservations on the wire fail (503 within the deadline), the client
 *   reconnects at once; zero duplicates.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { type FaultProxy, startFaultProxy } from "../../harness/fault-proxy.ts";
import { type RedisProcess, startRedis } from "../../harness/redis-server.ts";
import { type ServiceProcess, startService } from "../../harness/service.ts";
import { type ChaosResult, expectVerdictOk, FULL, figures, runChaos } from "./chaos-run.ts";

const IDS = ["p0", "p1", "p2", "p3", "p4"];
const DEADLINE_MS = 1000;
const PARTITION_MS = FULL ? 10_000 : 3000;

let redis: RedisProcess | undefined;
let proxy: FaultProxy | undefined;
let service: ServiceProcess | undefined;
afterEach(async () => {
  await service?.stop("SIGKILL");
  await proxy?.close();
  await redis?.stop();
  service = undefined;
  proxy = undefined;
  redis = undefined;
});

/** Redis behind a fault proxy and a service on it, loaded by 40 clients while `faults` works the proxy. */
async function runThroughProxy(
  tailMs: number,
  faults: (proxy: FaultProxy, mark: (label: string) => void) => Promise<void>,
): Promise<ChaosResult> {
  redis = await startRedis({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
  const between = await startFaultProxy("127.0.0.1", redis.port);
  proxy = between;
  service = await startService({ store: between.url, env: { TURNOMATIC_DEADLINE_MS: String(DEADLINE_MS) } });
  return runChaos({
    url: service.url,
    ids: IDS,
    clients: 40,
    timeoutMs: 5 * DEADLINE_MS,
    warmupMs: 1000,
    tailMs,
    faults: (mark) => faults(between, mark),
  });
}

describe("chaos: partition between the service and Redis", () => {
  test("blackhole: 503s within the deadline, recovery after heal, zero duplicates", async () => {
    const result = await runThroughProxy(FULL ? 5000 : 2000, async (proxy, mark) => {
      mark("fault");
      proxy.blackhole();
      await Bun.sleep(PARTITION_MS);
      mark("heal");
      proxy.heal();
    });
    const f = figures("partition-blackhole", result, "fault", "heal");
    expectVerdictOk(result);
    expect(f.duplicates).toBe(0);
    expect(f.failed).toBeGreaterThan(0);
    // Every failure is an answer (503), not a client timeout, and came within the deadline plus the sweep's slack.
    expect(f.noAnswer).toBe(0);
    const failures = result.history.filter((e) => e.turno === undefined);
    expect(failures.every((e) => e.status === 503)).toBe(true);
    expect(f.slowestFailureMs).toBeLessThan(DEADLINE_MS + 500);
    expect(f.recoveryMs).toBeLessThan(5000);
  });

  test("connections reset: 503s within the deadline, reconnect, zero duplicates", async () => {
    const result = await runThroughProxy(2000, async (proxy, mark) => {
      // Spaced so the client reconnects in between: each reset is one fault cycle.
      for (let i = 0; i < (FULL ? 10 : 3); i++) {
        mark(i === 0 ? "fault" : `fault:${i}`);
        proxy.reset();
        await Bun.sleep(1500);
      }
    });
    const f = figures("partition-reset", result, "fault");
    expectVerdictOk(result);
    expect(f.duplicates).toBe(0);
    expect(f.noAnswer).toBe(0);
    expect(f.slowestFailureMs).toBeLessThan(DEADLINE_MS + 500);
    expect(f.recoveryMs).toBeLessThan(5000);
  });
});
