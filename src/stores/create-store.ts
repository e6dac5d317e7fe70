import type { CounterStore } from "../domain/counter-store.ts";
import { ConfigError } from "../domain/errors.ts";
import type { ConnectionStateListener } from "./connection-events.ts";
import { MemoryStore } from "./memory-store.ts";
import type { StartCheck } from "./redis-checks.ts";
import { createRedisClusterStore } from "./redis-cluster-store.ts";
import { createRedisSentinelStore } from "./redis-sentinel-store.ts";
import { createRedisStore, RedisCounterStore } from "./redis-store.ts";
import { hasTlsFiles, type RedisTlsFiles } from "./redis-tls.ts";
import { SqliteStore } from "./sqlite-store.ts";
import type { WriteHealthObserver } from "./write-health.ts";

export interface StoreSettings {
  /** The TURNOMATIC_STORE URL. */
  readonly url: string;
  readonly redisKeyPrefix: string;
  readonly commandTimeoutMs: number;
  /** "auto" = 1 for redis+sentinel://, 0 otherwise. */
  readonly redisWaitReplicas: number | "auto";
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

/** True for the Redis URLs that use TLS (rediss*:// or ?tls=true). */
function usesTls(url: string): boolean {
  return url.startsWith("rediss") || /[?&]tls=(true|1)(&|$)/.test(url);
}

/** Builds the store a TURNOMATIC_STORE URL names; throws ConfigError for forms it cannot serve. */
export function createStore(settings: StoreSettings): CounterStore {
  const { url } = settings;
  if (url === "memory:") return new MemoryStore();
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    if (path === "") throw new ConfigError("TURNOMATIC_STORE sqlite: needs a path, e.g. sqlite:./data/turnomatic.db");
    return new SqliteStore({ path, busyTimeoutMs: settings.commandTimeoutMs, onWriteHealth: settings.onWriteHealth });
  }
  if (hasTlsFiles(settings.redisTls) && !usesTls(url)) {
    throw new ConfigError(
      "--redis-tls-ca, --redis-tls-cert and --redis-tls-key apply to TLS connections only; use rediss://, rediss+cluster:// or rediss+sentinel:// in TURNOMATIC_STORE (or unset them).",
    );
  }
  const common = {
    url,
    keyPrefix: settings.redisKeyPrefix,
    commandTimeoutMs: settings.commandTimeoutMs,
    onStateChange: settings.onStateChange,
    tls: settings.redisTls,
    checks: { allowEviction: settings.redisAllowEviction ?? false },
  };
  const sentinel = url.startsWith("redis+sentinel://") || url.startsWith("rediss+sentinel://");
  const waitReplicas = settings.redisWaitReplicas === "auto" ? (sentinel ? 1 : 0) : settings.redisWaitReplicas;
  const wait = { waitReplicas, waitTimeoutMs: settings.redisWaitTimeoutMs };
  if (url.startsWith("redis://") || url.startsWith("rediss://")) return createRedisStore({ ...common, ...wait });
  if (sentinel) return createRedisSentinelStore({ ...common, ...wait });
  if (url.startsWith("redis+cluster://") || url.startsWith("rediss+cluster://")) {
    if (waitReplicas > 0) {
      throw new ConfigError(
        "--redis-wait-replicas is not supported with redis+cluster:// (a WAIT must follow each write on its primary's connection); set it to 0 or auto. Rollback fencing still guards each process.",
      );
    }
    return createRedisClusterStore(common);
  }
  throw new ConfigError(
    `TURNOMATIC_STORE '${url.replace(/\/\/([^@/]*)@/, "//<redacted>@")}' is not supported; use sqlite:, memory:, redis://, rediss://, redis+cluster:// or redis+sentinel://.`,
  );
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
