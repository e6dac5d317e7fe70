import type { CounterStore } from "../domain/counter-store.ts";
import { ConfigError } from "../config.ts";
import type { ConnectionStateListener } from "./connection-events.ts";
import { MemoryStore } from "./memory-store.ts";
import { createRedisStore } from "./redis-store.ts";
import { SqliteStore } from "./sqlite-store.ts";

export interface StoreSettings {
  /** The TURNOMATIC_STORE URL. */
  readonly url: string;
  readonly redisKeyPrefix: string;
  readonly commandTimeoutMs: number;
  readonly redisWaitReplicas: number;
  readonly redisWaitTimeoutMs: number;
  /** Told about a network store's connection state changes (for the logs). Default: none. */
  readonly onStateChange?: ConnectionStateListener;
}

/** Builds the store a TURNOMATIC_STORE URL names; throws ConfigError for forms it cannot serve. */
export function createStore(settings: StoreSettings): CounterStore {
  const { url } = settings;
  if (url === "memory:") return new MemoryStore();
  if (url.startsWith("sqlite:")) {
    const path = url.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    if (path === "") throw new ConfigError("TURNOMATIC_STORE sqlite: needs a path, e.g. sqlite:./data/turnomatic.db");
    return new SqliteStore({ path, busyTimeoutMs: settings.commandTimeoutMs });
  }
  if (url.startsWith("redis://") || url.startsWith("rediss://")) {
    return createRedisStore({
      url,
      keyPrefix: settings.redisKeyPrefix,
      commandTimeoutMs: settings.commandTimeoutMs,
      onStateChange: settings.onStateChange,
    });
  }
  throw new ConfigError(`TURNOMATIC_STORE '${url}' is not supported by this build; use sqlite:, memory:, redis:// or rediss://.`);
}
