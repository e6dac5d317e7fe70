/**
 * Chaos: Sentinel failover. The primary is killed (-9) under load; the sentinels promote a replica
 * and the service follows. Every reservation waited for one replica (WAIT, the sentinel default), so
 * the promoted replica has every number handed out: duplicates are counted and must be zero, gaps
 * stay within the failed requests, and the time to recover is measured.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { type RedisSentinelProcess, startRedisSentinel } from "../../harness/redis-sentinel.ts";
import { type ServiceProcess, startService } from "../../harness/service.ts";
import { waitFor } from "../../harness/ports.ts";
import { countFences, expectVerdictOk, FULL, figures, runChaos, FAILOVER_PHASES } from "./chaos-run.ts";

const IDS = ["s0", "s1", "s2", "s3", "s4"];

let deployment: RedisSentinelProcess | undefined;
let service: ServiceProcess | undefined;
afterEach(async () => {
  await service?.stop("SIGKILL");
  await deployment?.stop();
  service = undefined;
  deployment = undefined;
});

describe("chaos: Sentinel failover", () => {
  test("kill -9 the primary under load: zero duplicates, gaps <= failed, recovery measured", async () => {
    deployment = await startRedisSentinel({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
    const sentinels = deployment;
    service = await startService({ store: sentinels.url });
    const result = await runChaos({
      url: service.url,
      ids: IDS,
      clients: 40,
      ...FAILOVER_PHASES,
      maxMs: 120_000,
      faults: async (mark) => {
        for (let round = 0; round < (FULL ? 2 : 1); round++) {
          const old = await sentinels.currentPrimary();
          mark(round === 0 ? "fault" : `fault:${round}`);
          await old.kill();
          await waitFor(
            "the sentinels to promote a replica",
            async () => (await sentinels.currentPrimary()) !== old,
            30_000,
            100,
          );
          if (round === 0) mark("promoted");
          // The old primary comes back as a replica of the new one, ready for the next round.
          await old.restart();
          await waitFor(
            "the old primary to rejoin as a synced replica",
            async () => (await old.cli("INFO", "replication")).includes("master_link_status:up"),
            30_000,
            100,
          );
          // Steady load between rounds, so each round's recovery is measured on its own.
          await Bun.sleep(FULL ? 3000 : 0);
        }
      },
    });
    const f = figures("sentinel-failover", result, "fault");
    const promotedAfterMs = Math.round((result.marks.get("promoted") ?? 0) - (result.marks.get("fault") ?? 0));
    console.log(`CHAOS sentinel promotion took ${promotedAfterMs} ms; fences logged: ${countFences(service.logs())}`);
    expectVerdictOk(result);
    expect(f.duplicates).toBe(0);
    expect(f.gaps).toBeLessThanOrEqual(f.failed);
    expect(f.failed).toBeGreaterThan(0);
    expect(f.recoveryMs).toBeLessThan(30_000);
  });
});
