import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CounterStore } from "../../src/domain/counter-store.ts";
import { MemoryStore } from "../../src/stores/memory-store.ts";
import { createRedisStore } from "../../src/stores/redis-store.ts";
import { SqliteStore } from "../../src/stores/sqlite-store.ts";
import { type RedisProcess, startRedis } from "./redis-server.ts";

/** A store under test plus how to get a fresh one and clean up; every backend has one. */
export interface StoreFixture {
  readonly name: string;
  /** A store with no counters. */
  create(): Promise<CounterStore>;
  /** TURNOMATIC_STORE URL for a service process using the same backend. */
  serviceUrl(): Promise<string>;
  teardown(): Promise<void>;
}

export function memoryFixture(): StoreFixture {
  return { name: "memory", create: async () => new MemoryStore(), serviceUrl: async () => "memory:", teardown: async () => {} };
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

/** Every store backend the conformance and concurrency suites run against. */
export const STORE_FIXTURES: ReadonlyArray<() => StoreFixture> = [memoryFixture, sqliteFixture, redisFixture];
