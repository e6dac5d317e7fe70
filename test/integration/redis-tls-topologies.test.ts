/**
 * Sentinel and Cluster over TLS on a private CA (issue 18), on real redis-server and
 * redis-sentinel processes: the CA given through the store's TLS option reaches the sentinels, the
 * data nodes and every cluster node (the start-up checks' probes of replicas included); without it
 * the cause is named.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { RedisCounterStore } from "../../src/stores/redis-store.ts";
import { createRedisClusterStore } from "../../src/stores/redis-cluster-store.ts";
import { createRedisSentinelStore } from "../../src/stores/redis-sentinel-store.ts";
import { startRedisCluster } from "../../harness/redis-cluster.ts";
import { startRedisSentinel } from "../../harness/redis-sentinel.ts";
import { aclArgs } from "../../harness/redis-server.ts";
import { createTestPki, type TestPki } from "../../harness/redis-tls.ts";

const DURABLE = ["--appendonly", "yes", "--appendfsync", "always"];
let pki: TestPki;
beforeAll(() => {
  pki = createTestPki();
});
afterAll(() => pki.remove());

/** Reserves on many ids (all slots of a cluster), checks the nodes, and closes. */
async function exercise(store: RedisCounterStore): Promise<void> {
  try {
    const check = await store.checkAtStart(5000);
    expect(check).toMatchObject({ state: "ok", warnings: [] });
    for (let i = 0; i < 20; i++) expect(await store.reserve({ id: `id${i}`, n: 2 })).toMatchObject({ first: 1, count: 2 });
    expect((await store.peek("id7")).value).toBe(2);
  } finally {
    await store.close();
  }
}

async function expectUntrusted(store: RedisCounterStore): Promise<void> {
  try {
    const check = await store.checkAtStart(3000);
    expect(check.state).toBe("unreachable");
    if (check.state === "unreachable") expect(check.cause).toContain("TLS certificate is not trusted");
    const failure = await store.reserve({ id: "x", n: 1 }).catch((error: unknown) => error);
    expect((failure as Error).message).toContain("TLS certificate is not trusted");
    expect((failure as Error).message).not.toContain("maxRetriesPerRequest");
    await expect(store.ping()).rejects.toThrow("TLS certificate is not trusted");
  } finally {
    await store.close();
  }
}

describe("Sentinel over TLS", () => {
  test("sentinels, primary and replicas on the private CA; without the CA the cause is named", async () => {
    const deployment = await startRedisSentinel({ args: DURABLE, tls: { pki } });
    try {
      expect(deployment.url.startsWith("rediss+sentinel://")).toBe(true);
      const options = { url: deployment.url, keyPrefix: "t:", commandTimeoutMs: 1000, waitReplicas: 1, waitTimeoutMs: 500 };
      await exercise(createRedisSentinelStore({ ...options, tls: { caFile: pki.ca } }));
      await expectUntrusted(createRedisSentinelStore(options));
    } finally {
      await deployment.stop();
    }
  });
});

describe("Cluster over TLS", () => {
  test("every node on the private CA (probes of replicas too); without the CA the cause is named", async () => {
    const cluster = await startRedisCluster({ args: DURABLE, tls: { pki } });
    try {
      expect(cluster.url.startsWith("rediss+cluster://")).toBe(true);
      const options = { url: cluster.url, keyPrefix: "t:", commandTimeoutMs: 1000 };
      const store = createRedisClusterStore({ ...options, tls: { caFile: pki.ca } });
      // A replica with a weak setting is found through its TLS probe.
      const [shard] = await cluster.shards();
      const replica = shard?.replicas[0];
      if (replica === undefined) throw new Error("no replica");
      await replica.cli("CONFIG", "SET", "appendfsync", "everysec");
      const check = await store.checkAtStart(5000);
      expect(check.state).toBe("at-risk");
      if (check.state !== "unreachable") expect(check.warnings.join("\n")).toContain(`127.0.0.1:${replica.port}`);
      await replica.cli("CONFIG", "SET", "appendfsync", "always");
      await exercise(store);
      await expectUntrusted(createRedisClusterStore(options));
    } finally {
      await cluster.stop();
    }
  });
});

describe("Sentinel over TLS with a managed ACL user (no CONFIG, no INFO)", () => {
  test("serves, and the checks find the replicas through the sentinels: 'cannot be verified' on each node", async () => {
    const acl = aclArgs(
      { user: "app", password: "app-pass", rules: ["+@all", "-@dangerous"] },
      { user: "admin", password: "admin-pass", rules: ["+@all"] },
    );
    const deployment = await startRedisSentinel({
      args: [...DURABLE, ...acl],
      tls: { pki },
      admin: { user: "admin", password: "admin-pass" },
    });
    const url = deployment.url.replace("rediss+sentinel://", "rediss+sentinel://app:app-pass@");
    const store = createRedisSentinelStore({
      url,
      keyPrefix: "a:",
      commandTimeoutMs: 1000,
      waitReplicas: 1,
      waitTimeoutMs: 500,
      tls: { caFile: pki.ca },
    });
    try {
      const check = await store.checkAtStart(5000);
      expect(check.state).toBe("unknown");
      const warnings = check.state === "unreachable" ? [] : check.warnings.join("\n");
      expect(warnings).toContain("redis-sentinel primary");
      for (const replica of deployment.servers.slice(1)) expect(warnings).toContain(`replica 127.0.0.1:${replica.port}`);
      expect(warnings).toContain("cannot be verified with this Redis user");
      expect(await store.reserve({ id: "acl", n: 3 })).toMatchObject({ first: 1, count: 3 });
    } finally {
      await store.close();
      await deployment.stop();
    }
  });
});
