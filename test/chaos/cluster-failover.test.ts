/**
 * Chaos: Redis Cluster loses a primary (kill -9) under load; its replica is promoted after the node
 * timeout and the client follows the new slot map. Cluster replication is asynchronous, so the
 * promoted replica may miss the last acknowledged writes: rollback fencing in the service must keep
 * that from ever showing as a duplicate. Zero duplicates, gaps <= failed, recovery measured.
 *
 * On loopback a replica is rarely behind, so the failover alone seldom needs a fence. The second
 * scenario forces the rollback: a whole shard (primary and replica, no persistence) dies and its
 * primary comes back empty, still owning its slots. Fencing on: zero duplicates; fencing off: the
 * same run must show duplicates (negative control).
 */
import { afterEach, describe, expect, test } from "bun:test";
import { waitFor } from "../../harness/ports.ts";
import { type RedisClusterOptions, type RedisClusterProcess, startRedisCluster } from "../../harness/redis-cluster.ts";
import { type ServiceProcess, startService } from "../../harness/service.ts";
import { type ChaosResult, countFences, expectVerdictOk, FULL, figures, runChaos, FAILOVER_PHASES } from "./chaos-run.ts";

// Enough ids that every primary serves some of them.
const IDS = Array.from({ length: 24 }, (_, i) => `cl${i}`);

let cluster: RedisClusterProcess | undefined;
let service: ServiceProcess | undefined;
afterEach(async () => {
  await service?.stop("SIGKILL");
  await cluster?.stop();
  service = undefined;
  cluster = undefined;
});

/** A cluster and a service on it, loaded by 48 clients while `faults` works the cluster's nodes. */
async function runOnCluster(
  options: RedisClusterOptions,
  faults: (nodes: RedisClusterProcess, mark: (label: string) => void) => Promise<void>,
): Promise<{ nodes: RedisClusterProcess; service: ServiceProcess; result: ChaosResult }> {
  const nodes = await startRedisCluster(options);
  cluster = nodes;
  const served = await startService({ store: nodes.url });
  service = served;
  const result = await runChaos({
    url: served.url,
    ids: IDS,
    clients: 48,
    ...FAILOVER_PHASES,
    maxMs: 150_000,
    faults: (mark) => faults(nodes, mark),
  });
  return { nodes, service: served, result };
}

describe("chaos: Redis Cluster failover", () => {
  test("a shard restarted empty under load: every turn refused (never re-issued), by running and new processes", async () => {
    const { nodes, result } = await runOnCluster({}, async (nodes, mark) => {
      const [shard] = await nodes.shards();
      if (shard === undefined) throw new Error("no shard");
      mark("fault");
      for (const replica of shard.replicas) await replica.kill();
      await shard.primary.kill();
      await Bun.sleep(FULL ? 3000 : 1000);
      // Same node id and slots (nodes.conf survives), no data: the shard went back to zero,
      // its slot markers with it (cluster-markers.ts).
      await shard.primary.restart();
      for (const replica of shard.replicas) await replica.restart();
      await nodes.waitHealthy(30_000);
    });
    const f = figures("cluster-shard-empty-restart", result, "fault");
    expect(f.duplicates).toBe(0);
    expect(result.failures.get("TURNO_ERR_STORE_LOST")?.count ?? 0).toBeGreaterThan(0);
    // A process with no record of the store refuses too: the other shards' markers remain.
    const fresh = await startService({ store: nodes.url });
    try {
      const turn = await fetch(`${fresh.url}/turno/${IDS[0]}`);
      expect(turn.status).toBe(503);
      expect(((await turn.json()) as { code: string }).code).toBe("TURNO_ERR_STORE_LOST");
    } finally {
      await fresh.stop();
    }
  });

  test("kill -9 a primary under load, replica promoted: zero duplicates", async () => {
    const { service, result } = await runOnCluster(
      { args: ["--appendonly", "yes", "--appendfsync", "always"] },
      async (nodes, mark) => {
        for (let round = 0; round < (FULL ? 3 : 1); round++) {
          const primaries = await nodes.primaries();
          const victim = primaries[round % primaries.length];
          if (victim === undefined) throw new Error("no primary to kill");
          mark(round === 0 ? "fault" : `fault:${round}`);
          await victim.kill();
          await nodes.waitHealthy(30_000);
          if (round === 0) mark("promoted");
          // Back as a replica of its successor, so the next round again has 3 primaries with replicas.
          await victim.restart();
          await waitFor(
            "the killed node to rejoin as a synced replica",
            async () => (await victim.cli("INFO", "replication")).includes("master_link_status:up"),
            30_000,
            200,
          );
          await nodes.waitHealthy(30_000);
          // Steady load between rounds, so each round's recovery is measured on its own.
          await Bun.sleep(FULL ? 3000 : 0);
        }
      },
    );
    const f = figures("cluster-failover", result, "fault");
    const promotedAfterMs = Math.round((result.marks.get("promoted") ?? 0) - (result.marks.get("fault") ?? 0));
    console.log(`CHAOS cluster promotion took ${promotedAfterMs} ms; fences logged: ${countFences(service.logs())}`);
    expectVerdictOk(result);
    expect(f.duplicates).toBe(0);
    expect(f.failed).toBeGreaterThan(0);
    expect(f.recoveryMs).toBeLessThan(30_000);
  });
});
