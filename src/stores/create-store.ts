import type { CounterStore } from "../domain/counter-store.ts";
import type { ConnectionStateListener } from "./connection-events.ts";
import { MemoryStore } from "./memory-store.ts";
import type { StartCheck } from "./redis-checks.ts";
import { createRedisClusterStore } from "./redis-cluster-store.ts";
import { createRedisSentinelStore } from "./redis-sentinel-store.ts";
import { createRedisStore, RedisCounterStore } from "./redis-store.ts";
import type { RedisTlsFiles } from "./redis-tls.ts";
import { SqliteStore } from "./sqlite-store.ts";
import type { StoreUrl } from "./store-url.ts";
import type { WriteHealthObserver } from "./write-health.ts";

export interface StoreSettings {
  /** The TURNOMATIC_STORE URL, as the configuration parsed it (store-url.ts). */
  readonly url: StoreUrl;
  readonly redisKeyPrefix: string;
  readonly commandTimeoutMs: number;
  /** Replicas that must acknowledge each reservation (WAIT); 0 = none; "all" = every live one (config.ts waitReplicasOf). */
  readonly redisWaitReplicas: number | "all";
  readonly redisWaitTimeoutMs: number;
  /** Told about a network store's connection state changes (for the logs). Default: none. */
  readonly onStateChange?: ConnectionStateListener;
  /** Told when a local store's writes start failing and work again (SQLite). Default: none. */
  readonly onWriteHealth?: WriteHealthObserver;
  /** CA bundle and client certificate for a TLS Redis URL (--redis-tls-*). Default: none. */
  readonly redisTls?: RedisTlsFiles;
  /** Accept a maxmemory-policy that can evict counters (--redis-allow-eviction). Default false. */
  readonly redisAllowEviction?: boolean;
}

/**
 * Builds the store a parsed TURNOMATIC_STORE URL names. The forms and the combinations of options
 * were checked by the configuration (store-url.ts, config.ts), so this only switches on the kind.
 */
export function createStore(settings: StoreSettings): CounterStore {
  const { url } = settings;
  switch (url.kind) {
    case "memory":
      return new MemoryStore();
    case "sqlite":
      return new SqliteStore({ path: url.path, busyTimeoutMs: settings.commandTimeoutMs, onWriteHealth: settings.onWriteHealth });
  }
  const common = {
    keyPrefix: settings.redisKeyPrefix,
    commandTimeoutMs: settings.commandTimeoutMs,
    onStateChange: settings.onStateChange,
    tls: settings.redisTls,
    checks: { allowEviction: settings.redisAllowEviction ?? false },
  };
  const wait = { waitReplicas: settings.redisWaitReplicas, waitTimeoutMs: settings.redisWaitTimeoutMs };
  switch (url.kind) {
    case "redis":
      // "all" comes only with Sentinel, which lists the replicas; a single server has none to list.
      return createRedisStore({
        ...common,
        ...wait,
        waitReplicas: typeof wait.waitReplicas === "number" ? wait.waitReplicas : 0,
        url: url.text,
      });
    case "redis-sentinel":
      return createRedisSentinelStore({ ...common, ...wait, url });
    case "redis-cluster":
      return createRedisClusterStore({ ...common, url });
  }
}

/**
 * The start-up checks of any store: persistence and eviction for Redis (redis-checks.ts, waiting up
 * to `waitMs` for the connection), the durability warnings of the others.
 */
export async function checkStoreAtStart(store: CounterStore, waitMs: number): Promise<StartCheck> {
  if (store instanceof RedisCounterStore) return store.checkAtStart(waitMs);
  const warnings = await store.durabilityWarnings();
  return { state: warnings.length > 0 ? "at-risk" : "ok", warnings, notes: [] };
}
