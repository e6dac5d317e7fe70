import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CounterStore } from "../../src/domain/counter-store.ts";
import { MemoryStore } from "../../src/stores/memory-store.ts";
import { createRedisClusterStore } from "../../src/stores/redis-cluster-store.ts";
import { createRedisSentinelStore } from "../../src/stores/redis-sentinel-store.ts";
import { createRedisStore } from "../../src/stores/redis-store.ts";
import { SqliteStore } from "../../src/stores/sqlite-store.ts";
import { type RedisClusterProcess, startRedisCluster } from "./redis-cluster.ts";
import { type RedisSentinelProcess, startRedisSentinel } from "./redis-sentinel.ts";
import { type RedisProcess, startRedis } from "./redis-server.ts";

/** A store under test plus how to get a fresh one and clean up; every backend has one. */
export interface StoreFixture {
  readonly name: string;
  /** False for a store without the marker protocol (memory). Default true. */
  readonly durable?: boolean;
  /** A store with no counters. */
  create(): Promise<CounterStore>;
  /** TURNOMATIC_STORE URL for a service process using the same backend. */
  serviceUrl(): Promise<string>;
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
  redisClusterFixture,
  redisSentinelFixture,
];
