import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CounterStore } from "../src/domain/counter-store.ts";
import { MemoryStore } from "../src/stores/memory-store.ts";
import { createRedisClusterStore } from "../src/stores/redis-cluster-store.ts";
import { createRedisSentinelStore } from "../src/stores/redis-sentinel-store.ts";
import { createRedisStore } from "../src/stores/redis-store.ts";
import { SqliteStore } from "../src/stores/sqlite-store.ts";
import { type RedisClusterProcess, startRedisCluster } from "./redis-cluster.ts";
import { type RedisSentinelProcess, startRedisSentinel } from "./redis-sentinel.ts";
import { aclArgs, type RedisProcess, startRedis } from "./redis-server.ts";
import { createTestPki, type TestPki } from "./redis-tls.ts";

/** A store under test plus how to get a fresh one and clean up; every backend has one. */
export interface StoreFixture {
  readonly name: string;
  /** False for a store without the marker protocol (memory). Default true. */
  readonly durable?: boolean;
  /** A store with no counters. */
  create(): Promise<CounterStore>;
  /** TURNOMATIC_STORE URL for a service process using the same backend. */
  serviceUrl(): Promise<string>;
  /** Options such a service process needs besides the URL (e.g. --redis-tls-ca). Default none. */
  readonly serviceArgs?: () => string[];
  teardown(): Promise<void>;
}

export function memoryFixture(): StoreFixture {
  return {
    name: "memory",
    durable: false,
    create: async () => new MemoryStore(),
    serviceUrl: async () => "memory:",
    teardown: async () => {},
  };
}

export function sqliteFixture(): StoreFixture {
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-sqlite-"));
  let n = 0;
  return {
    name: "sqlite",
    create: async () => new SqliteStore({ path: join(dir, `store-${n++}.db`), busyTimeoutMs: 1000 }),
    serviceUrl: async () => `sqlite:${join(dir, `service-${n++}.db`)}`,
    teardown: async () => rmSync(dir, { recursive: true, force: true }),
  };
}

export function redisFixture(): StoreFixture {
  let redis: RedisProcess | undefined;
  let n = 0;
  const server = async () => (redis ??= await startRedis());
  return {
    name: "redis",
    create: async () => createRedisStore({ url: (await server()).url, keyPrefix: `t${n++}:`, commandTimeoutMs: 1000 }),
    serviceUrl: async () => {
      const r = await server();
      await r.cli("FLUSHALL");
      return r.url;
    },
    teardown: async () => redis?.stop(),
  };
}

/**
 * A Redis as managed services run it: TLS only on a private CA (given through the store's TLS
 * option), `user default off`, and an ACL user without @dangerous commands (no CONFIG, no INFO).
 */
export function redisTlsFixture(): StoreFixture {
  let redis: RedisProcess | undefined;
  let pki: TestPki | undefined;
  let n = 0;
  // The test's own admin user empties the database between tests (FLUSHDB is @dangerous).
  const acl = aclArgs(
    { user: "app", password: "app-pass", rules: ["+@all", "-@dangerous"] },
    { user: "admin", password: "admin-pass", rules: ["+@all"] },
  );
  const server = async () => {
    pki ??= createTestPki();
    redis ??= await startRedis({ tls: { pki }, args: acl, cliUser: { user: "admin", password: "admin-pass" } });
    return { redis, pki, url: redis.url.replace("rediss://", "rediss://app:app-pass@") };
  };
  return {
    name: "redis-tls-acl",
    create: async () => {
      const { url, pki } = await server();
      return createRedisStore({ url, keyPrefix: `t${n++}:`, commandTimeoutMs: 1000, tls: { caFile: pki.ca } });
    },
    serviceUrl: async () => {
      const { redis, url } = await server();
      await redis.cli("FLUSHDB");
      return url;
    },
    serviceArgs: () => (pki === undefined ? [] : ["--redis-tls-ca", pki.ca]),
    teardown: async () => {
      await redis?.stop();
      pki?.remove();
    },
  };
}

/** A real 3-primary, 3-replica Redis Cluster, started on first use. */
export function redisClusterFixture(): StoreFixture {
  let cluster: RedisClusterProcess | undefined;
  let n = 0;
  const servers = async () => (cluster ??= await startRedisCluster());
  return {
    name: "redis-cluster",
    create: async () => createRedisClusterStore({ url: (await servers()).url, keyPrefix: `t${n++}:`, commandTimeoutMs: 1000 }),
    serviceUrl: async () => {
      const c = await servers();
      await c.flush();
      return c.url;
    },
    teardown: async () => cluster?.stop(),
  };
}

/** A primary, two replicas and three sentinels; every write waits for one replica (WAIT). */
export function redisSentinelFixture(): StoreFixture {
  let deployment: RedisSentinelProcess | undefined;
  let n = 0;
  const servers = async () => (deployment ??= await startRedisSentinel());
  return {
    name: "redis-sentinel",
    create: async () =>
      createRedisSentinelStore({
        url: (await servers()).url,
        keyPrefix: `t${n++}:`,
        commandTimeoutMs: 1000,
        waitReplicas: 1,
        waitTimeoutMs: 500,
      }),
    serviceUrl: async () => {
      const d = await servers();
      await (await d.currentPrimary()).cli("FLUSHALL");
      return d.url;
    },
    teardown: async () => deployment?.stop(),
  };
}

/** Every store backend the conformance and concurrency suites run against. */
export const STORE_FIXTURES: ReadonlyArray<() => StoreFixture> = [
  memoryFixture,
  sqliteFixture,
  redisFixture,
  redisTlsFixture,
  redisClusterFixture,
  redisSentinelFixture,
];
