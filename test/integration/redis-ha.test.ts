/**
 * Replica acknowledgement (WAIT) and the durability gauge, against real redis-server processes.
 */
import { afterAll, describe, expect, test } from "bun:test";
import Redis from "ioredis";
import { StoreUnavailableError } from "../../src/domain/errors.ts";
import { createRedisClusterStore } from "../../src/stores/redis-cluster-store.ts";
import { createRedisSentinelStore } from "../../src/stores/redis-sentinel-store.ts";
import { createRedisStore } from "../../src/stores/redis-store.ts";
import { ReplicaAck } from "../../src/stores/replica-ack.ts";
import { waitFor } from "../../harness/ports.ts";
import { startRedisCluster } from "../../harness/redis-cluster.ts";
import { startRedisSentinel } from "../../harness/redis-sentinel.ts";
import { type RedisProcess, startRedis } from "../../harness/redis-server.ts";
import { startService } from "../../harness/service.ts";

const started: RedisProcess[] = [];
afterAll(async () => {
  for (const server of started) await server.stop();
});
async function redis(args: string[] = []): Promise<RedisProcess> {
  const server = await startRedis({ args });
  started.push(server);
  return server;
}

describe("WAIT after each reservation", () => {
  test("a reservation no replica acknowledged fails, and its numbers are skipped, never re-issued", async () => {
    const lonely = await redis();
    const store = createRedisStore({
      url: lonely.url,
      keyPrefix: "w:",
      commandTimeoutMs: 1000,
      waitReplicas: 1,
      waitTimeoutMs: 50,
    });
    try {
      const failure = await store.reserve({ id: "a", n: 3 }).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(StoreUnavailableError);
      expect((failure as Error).message).toContain("--redis-wait-replicas");
      // The primary applied the script: the next grant starts after the numbers in doubt.
      expect((await store.peek("a")).value).toBe(3);
    } finally {
      await store.close();
    }
  });

  test("one WAIT covers every reservation whose reply came before it; all are on the replica", async () => {
    const primary = await redis(["--repl-diskless-sync-delay", "0"]);
    const replica = await redis(["--replicaof", "127.0.0.1", String(primary.port)]);
    await waitFor("replica in sync", async () => (await replica.cli("INFO", "replication")).includes("master_link_status:up"));
    const client = new Redis(primary.url, { enableAutoPipelining: true });
    const ack = new ReplicaAck(client, { replicas: 1, timeoutMs: 1000 });
    try {
      await Promise.all(
        Array.from({ length: 500 }, async (_, i) => {
          await client.incr(`k${i % 10}`);
          await ack.afterWrite();
        }),
      );
      expect(ack.stats.short).toBe(0);
      expect(ack.stats.waits).toBeGreaterThan(0);
      expect(ack.stats.waits).toBeLessThan(100);
      // Acknowledged means on the replica: read it there, without waiting.
      let total = 0;
      for (let i = 0; i < 10; i++) total += Number(await replica.cli("GET", `k${i}`));
      expect(total).toBe(500);
    } finally {
      client.disconnect();
    }
  });
});

describe("WAIT on the connection of the writes", () => {
  test("a WAIT delayed past a reconnect to another primary is not sent: there it would vouch for writes no replica has", async () => {
    // The writes go to a primary without replicas; a failover would then point the client at
    // another primary, whose replica acknowledges anything asked on that connection.
    const old = await redis();
    const promoted = await redis(["--repl-diskless-sync-delay", "0"]);
    await redis(["--replicaof", "127.0.0.1", String(promoted.port)]);
    await waitFor("replica online", async () => (await promoted.cli("INFO", "replication")).includes("state=online"));
    const client = new Redis(old.url, { retryStrategy: () => 10 });
    // The count arrives only after ioredis reconnected (a process that learns it during a failover).
    const afterFailover = async () => {
      client.options.port = promoted.port;
      client.disconnect(true);
      await new Promise((resolve) => client.once("ready", resolve));
      return 1;
    };
    try {
      await client.incr("lost");
      const delayed = new ReplicaAck(client, { replicas: afterFailover, timeoutMs: 500 });
      const failure = await delayed.afterWrite().catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(StoreUnavailableError);
      expect((failure as Error).message).toContain("connection to Redis changed");
      expect(delayed.stats.waits).toBe(0);
      // What that WAIT would have answered: the promoted primary's replica "acknowledges" it.
      expect(await client.wait(1, 500)).toBe(1);
      expect(await old.cli("GET", "lost")).toBe("1");
      expect(await promoted.cli("GET", "lost")).toBe("");
    } finally {
      client.disconnect();
    }
  });
});

describe("durability check on a cluster", () => {
  test("reads every primary and names the one that could lose numbers", async () => {
    const cluster = await startRedisCluster({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
    const store = createRedisClusterStore({ url: cluster.url, keyPrefix: "d:", commandTimeoutMs: 1000 });
    try {
      expect(await store.durabilityWarnings()).toEqual([]);
      const [weak] = await cluster.primaries();
      if (weak === undefined) throw new Error("no primary");
      await weak.cli("CONFIG", "SET", "appendfsync", "everysec");
      const warnings = await store.durabilityWarnings();
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`127.0.0.1:${weak.port}`);
      expect(warnings[0]).toContain("appendfsync is everysec");
    } finally {
      await store.close();
      await cluster.stop();
    }
  });
});

describe("durability check with Sentinel", () => {
  test("reads the replicas too: any of them may become the primary", async () => {
    const deployment = await startRedisSentinel({ args: ["--appendonly", "yes", "--appendfsync", "always"] });
    const store = createRedisSentinelStore({
      url: deployment.url,
      keyPrefix: "d:",
      commandTimeoutMs: 1000,
      waitReplicas: 1,
      waitTimeoutMs: 500,
    });
    try {
      expect(await store.durabilityWarnings()).toEqual([]);
      const replica = deployment.servers[2];
      if (replica === undefined) throw new Error("no replica");
      await replica.cli("CONFIG", "SET", "appendonly", "no");
      const warnings = await store.durabilityWarnings();
      expect(warnings).toHaveLength(1);
      expect(warnings[0]).toContain(`replica 127.0.0.1:${replica.port}`);
    } finally {
      await store.close();
      await deployment.stop();
    }
  });
});

describe("durability gauge", () => {
  const gaugeOf = async (metricsPort: number) => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    return /turnomatic_store_durability_warning\{store="redis"\} (\d)/.exec(text)?.[1];
  };

  test("1 when a Redis restart could lose acknowledged numbers, 0 with AOF always", async () => {
    for (const [args, expected] of [
      [[], "1"],
      [["--appendonly", "yes", "--appendfsync", "everysec"], "1"],
      [["--appendonly", "yes", "--appendfsync", "always"], "0"],
    ] as const) {
      const server = await redis([...args]);
      const service = await startService({ store: server.url });
      try {
        expect(await gaugeOf(service.metricsPort)).toBe(expected);
        if (expected === "1") expect(service.logs()).toContain('"store.durability"');
      } finally {
        await service.stop();
      }
    }
  });
});
