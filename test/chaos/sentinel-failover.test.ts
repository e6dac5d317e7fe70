/**
 * Chaos: Sentinel failover. The primary is killed (-9) under load; the sentinels promote a replica
 * and the service follows. Every reservation waited for every replica (WAIT, the sentinel default), so
 * the promoted replica has every number handed out: duplicates are counted and must be zero, gaps
 * stay within the failed requests, and the time to recover is measured.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkHistory, formatVerdict, type HistoryEntry } from "../../harness/history-checker.ts";
import { MASTER_NAME, type RedisSentinelProcess, startRedisSentinel } from "../../harness/redis-sentinel.ts";
import type { RedisProcess } from "../../harness/redis-server.ts";
import { type ServiceProcess, startService } from "../../harness/service.ts";
import { freePort, waitFor } from "../../harness/ports.ts";
import { requestTurn } from "../../harness/turn-load.ts";
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

/**
 * Regression for docs/reports/postmortems/2026-12-02-forced-failover-duplicates.md (found by the
 * nemesis run, seeds 20261202 and 151): an operator's `SENTINEL FAILOVER` promotes a replica while
 * the old primary still accepts writes, and the other replica acknowledges them (WAIT 1) until
 * Sentinel moves it to the new primary, which never had them. Host A takes numbers during that
 * window and dies (kill -9) before its next reservation could notice that the store went backwards;
 * host B joins after the switch, never saw A's reservations, and takes the same numbers again.
 * With WAIT 1 this gave 2,252-3,257 duplicates per run; with `--redis-wait-replicas auto` waiting
 * for every replica the sentinels list as up (the fix), the window's writes fail instead: 0.
 */
describe("chaos: forced Sentinel failover (SENTINEL FAILOVER), the host that saw the lost writes dies", () => {
  let second: ServiceProcess | undefined;
  afterEach(async () => {
    await second?.stop("SIGKILL");
    second = undefined;
  });
  /**
   * The scenario above; `waitReplicas` is host A's --redis-wait-replicas (undefined = the default).
   * `cutOff`: the failover promotes a replica whose link to the primary went down seconds before.
   */
  async function forcedFailover(waitReplicas?: string, cutOff = false) {
    deployment = await startRedisSentinel({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
    const sentinels = deployment;
    // Host A takes numbers through the switch; host B joins after it (a new or restarted host, as
    // the autoscaler or a rolling restart adds them), with a state folder of its own.
    const a = await startService({
      store: sentinels.url,
      stateDir: mkdtempSync(join(tmpdir(), "turnomatic-host-a-")),
      ...(waitReplicas === undefined ? {} : { env: { TURNOMATIC_REDIS_WAIT_REPLICAS: waitReplicas } }),
    });
    service = a;
    const history: HistoryEntry[] = [];
    const loop = (url: string, stop: () => boolean, index: number) =>
      (async () => {
        let k = index;
        while (!stop()) history.push(await requestTurn(url, IDS[k++ % IDS.length] as string, 5000));
      })();
    let aStopped = false;
    const aLoad = Promise.all(Array.from({ length: 20 }, (_, i) => loop(a.url, () => aStopped, i)));
    await Bun.sleep(1000);
    const old = await sentinels.currentPrimary();
    if (cutOff) await cutOffThePromotedReplica(sentinels, old);
    await sentinels.sentinelCli("SENTINEL", "FAILOVER", MASTER_NAME);
    // The replica is promoted within ~100 ms; the old primary keeps taking (acknowledged) writes
    // until the other replica is moved, ~1 s later. A dies inside that window, before any
    // reservation of its own on the new primary could notice the rollback.
    await Bun.sleep(600);
    await a.stop("SIGKILL");
    aStopped = true;
    await aLoad;
    await waitFor("the sentinels to switch the primary", async () => (await sentinels.currentPrimary()) !== old, 30_000, 50);
    second = await startService({ store: sentinels.url, stateDir: mkdtempSync(join(tmpdir(), "turnomatic-host-b-")) });
    const b = second;
    // B's WAITs fail until Sentinel has converted the old primary (it counts as a replica from the
    // switch on, replica-ack.ts fix 5), about 8 s: B's 3 s of load start at its first number, so
    // that B does take numbers on the new primary (otherwise "zero duplicates" could not fail).
    const aEntries = history.length;
    const bFirst = performance.now() + 30_000;
    for (let k = 0; performance.now() < bFirst; k++) {
      const entry = await requestTurn(b.url, IDS[k % IDS.length] as string, 5000);
      history.push(entry);
      if (entry.status === 200) break;
      await Bun.sleep(200);
    }
    const bUntil = performance.now() + 3000;
    await Promise.all(Array.from({ length: 8 }, (_, i) => loop(b.url, () => performance.now() >= bUntil, i)));
    const bServed = history.slice(aEntries).filter((entry) => entry.status === 200).length;
    expect(bServed).toBeGreaterThan(100);
    const verdict = checkHistory(history, { faults: true });
    console.log(
      `CHAOS forced failover (wait ${waitReplicas ?? "auto"}): B served ${bServed}; ${formatVerdict(verdict).split("\n")[0]}`,
    );
    return verdict;
  }

  test("zero duplicates across the two processes", async () => {
    expect((await forcedFailover()).totals.duplicates).toBe(0);
  }, 240_000);

  test("negative control: with WAIT 1 (the old default) the same run hands numbers out twice", async () => {
    expect((await forcedFailover("1")).totals.duplicates).toBeGreaterThan(0);
  }, 240_000);

  // Regression for docs/reports/postmortems/2026-12-02-link-down-replica-promoted.md (nemesis seed
  // 20261202, t+375 s): the count of replicas to wait for left out a replica whose link to the primary
  // was down, so it was 1, the WAIT 1 of the negative control above; the forced failover promoted that
  // replica and lost every write of the seconds its link was down.
  test("zero duplicates when the forced failover promotes a replica whose link to the primary is down", async () => {
    expect((await forcedFailover(undefined, true)).totals.duplicates).toBe(0);
  }, 240_000);
});

/**
 * Cuts one replica off the primary (REPLICAOF a closed port) and makes the other unpromotable
 * (replica-priority 0; it still acknowledges writes), then waits until the first sentinel, the one
 * the service asks, lists both: the forced failover that follows must promote the cut-off replica,
 * which Sentinel does while its link has been down for less than 10 x down-after-milliseconds.
 */
async function cutOffThePromotedReplica(sentinels: RedisSentinelProcess, primary: RedisProcess): Promise<void> {
  const [cut, kept] = sentinels.servers.filter((server) => server !== primary) as [RedisProcess, RedisProcess];
  const listed = async (replica: RedisProcess, name: string) => {
    const fields = (await sentinels.sentinelCli("SENTINEL", "REPLICAS", MASTER_NAME)).split("\n");
    const at = fields.findIndex((value, i) => value === "name" && fields[i + 1] === `127.0.0.1:${replica.port}`);
    const next = fields.indexOf("name", at + 2);
    const own = fields.slice(at, next < 0 ? undefined : next);
    return own[own.indexOf(name) + 1];
  };
  await kept.cli("CONFIG", "SET", "replica-priority", "0");
  await cut.cli("REPLICAOF", "127.0.0.1", String(await freePort()));
  await waitFor(
    "the sentinel to list one replica cut off and the other unpromotable",
    async () => (await listed(cut, "master-link-status")) === "err" && (await listed(kept, "slave-priority")) === "0",
    30_000,
    100,
  );
  // The service refreshes its count once a second: let it read this listing.
  await Bun.sleep(1500);
}
