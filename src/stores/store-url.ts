/**
 * The TURNOMATIC_STORE URL, parsed once (by the configuration) into the store it names. Every form
 * and every check of a form lives here; the store factory only switches on `kind`.
 *
 *   memory:                    one process, nothing persisted (tests, demos)
 *   sqlite:<path>              the embedded default
 *   redis[s]://…               one Redis server (ioredis reads the rest of the URL)
 *   redis[s]+cluster://h1:p1,h2:p2[?tls=true]
 *   redis[s]+sentinel://h1:p1,h2:p2/<master-name>[?db=0&sentinelPassword=…&tls=true]
 */
import { ConfigError } from "../domain/errors.ts";
import { type MultiHostUrl, parseMultiHostUrl, redactStoreUrl } from "./redis-url.ts";

export type StoreUrl =
  | { readonly kind: "memory"; readonly text: string }
  | { readonly kind: "sqlite"; readonly text: string; readonly path: string }
  | { readonly kind: "redis"; readonly text: string; readonly tls: boolean }
  | ClusterStoreUrl
  | SentinelStoreUrl;

export interface ClusterStoreUrl extends MultiHostUrl {
  readonly kind: "redis-cluster";
  readonly text: string;
}

export interface SentinelStoreUrl extends MultiHostUrl {
  readonly kind: "redis-sentinel";
  readonly text: string;
  readonly masterName: string;
  readonly db: number;
}

/** The schemes, as a user would write them (for messages and --help). */
const STORE_SCHEMES = [
  "sqlite:",
  "memory:",
  "redis://",
  "rediss://",
  "redis+cluster://",
  "rediss+cluster://",
  "redis+sentinel://",
  "rediss+sentinel://",
] as const;

/** Parses a store URL; throws ConfigError naming `name` (the flag or variable it came from). */
export function parseStoreUrl(text: string, name = "TURNOMATIC_STORE"): StoreUrl {
  if (text === "memory:") return { kind: "memory", text };
  if (text.startsWith("sqlite:")) {
    const path = text.slice("sqlite:".length).replace(/^\/\/(?=\/)/, "");
    if (path === "") throw new ConfigError(`${name} sqlite: needs a path, e.g. sqlite:./data/turnomatic.db`);
    return { kind: "sqlite", text, path };
  }
  if (text.startsWith("redis://") || text.startsWith("rediss://")) {
    return { kind: "redis", text, tls: text.startsWith("rediss://") || /[?&]tls=(true|1)(&|$)/.test(text) };
  }
  if (text.startsWith("redis+cluster://") || text.startsWith("rediss+cluster://")) {
    const url = parseMultiHostUrl(text, 6379);
    if (url.path !== "") {
      throw new ConfigError(
        `${name}: a redis+cluster:// URL has no path or database ('/${url.path}'); Redis Cluster has only database 0.`,
      );
    }
    return { ...url, kind: "redis-cluster", text };
  }
  if (text.startsWith("redis+sentinel://") || text.startsWith("rediss+sentinel://")) {
    const url = parseMultiHostUrl(text, 26379);
    if (url.path === "" || url.path.includes("/")) {
      throw new ConfigError(
        `${name}: a redis+sentinel:// URL must end with the master name Sentinel monitors, e.g. redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster`,
      );
    }
    const db = Number(url.params.get("db") ?? "0");
    if (!Number.isInteger(db) || db < 0) {
      throw new ConfigError(`${name}: db must be a database number; got '${url.params.get("db")}'.`);
    }
    return { ...url, kind: "redis-sentinel", text, masterName: url.path, db };
  }
  throw new ConfigError(
    `${name} must start with one of ${STORE_SCHEMES.join(", ")} (e.g. sqlite:./data/turnomatic.db or redis://127.0.0.1:6379); got '${redactStoreUrl(text)}'.`,
  );
}

/** `url` parsed (or as parsed by the configuration), refused unless it is of `kind`. */
export function storeUrlOf<K extends StoreUrl["kind"]>(url: string | StoreUrl, kind: K): Extract<StoreUrl, { kind: K }> {
  const parsed = typeof url === "string" ? parseStoreUrl(url) : url;
  if (parsed.kind !== kind) throw new ConfigError(`${redactStoreUrl(parsed.text)} is not a ${kind} URL.`);
  return parsed as Extract<StoreUrl, { kind: K }>;
}

/** True for the Redis forms, whose TLS files (--redis-tls-*) apply when `tls` is set. */
export function usesTls(url: StoreUrl): boolean {
  return url.kind !== "memory" && url.kind !== "sqlite" && url.tls;
}

export { redactStoreUrl };
