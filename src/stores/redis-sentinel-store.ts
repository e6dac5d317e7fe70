/**
 * Replicated Redis behind Sentinel:
 *
 *   redis+sentinel://[user:password@]s1:26379,s2:26379/<master-name>[?db=0&sentinelPassword=…&tls=true]
 *
 * ioredis asks the sentinels for the current primary and asks again after a failover
 * (`failoverDetector` makes it drop the old primary as soon as a sentinel announces the switch).
 * `user:password` authenticate to the Redis servers, `sentinelPassword` to the sentinels; `tls=true`
 * (or rediss+sentinel://) uses TLS for both.
 *
 * Every reservation is followed by WAIT (replica-ack.ts): the service answers only after
 * `--redis-wait-replicas` replicas hold the numbers, so a failover to one of them cannot re-issue.
 * A reservation not acknowledged in time fails its requests (503): its numbers are skipped.
 */
import Redis from "ioredis";
import { ConfigError } from "../config.ts";
import { type ConnectionStateListener, watchConnection } from "./connection-events.ts";
import {
  baseRedisOptions,
  defineScripts,
  describePersistence,
  RedisCounterStore,
  type RedisCounterStoreOptions,
  readPersistence,
  type ScriptedClient,
} from "./redis-store.ts";
import { parseMultiHostUrl } from "./redis-url.ts";
import { ReplicaAck } from "./replica-ack.ts";
import { guardAgainstSilence } from "./silence-guard.ts";

export interface RedisSentinelStoreOptions {
  /** redis+sentinel:// URL, see the header. */
  readonly url: string;
  /** Prefix of every key. Default "turnomatic:". */
  readonly keyPrefix: string;
  /** Longest wait for one Redis command (ms); usually the request deadline. */
  readonly commandTimeoutMs: number;
  /** Told about connection state changes (for the logs). Default: none. */
  readonly onStateChange?: ConnectionStateListener;
  /** Replicas that must acknowledge each reservation; 0 = no WAIT. */
  readonly waitReplicas: number;
  /** Longest WAIT (ms). */
  readonly waitTimeoutMs: number;
}

/**
 * Any replica may become the primary, so the durability check reads the replicas too (the primary
 * lists them in INFO replication); a replica without persistence that gets promoted and restarts
 * loses everything.
 */
class RedisSentinelCounterStore extends RedisCounterStore {
  readonly #redis: Redis;

  constructor(redis: Redis, keyPrefix: string, options: RedisCounterStoreOptions) {
    super("redis-sentinel", redis as unknown as ScriptedClient, keyPrefix, options);
    this.#redis = redis;
  }

  override async durabilityWarnings(): Promise<string[]> {
    const warnings = await super.durabilityWarnings();
    let replicas: Array<{ host: string; port: number }>;
    try {
      const info = await this.#redis.info("replication");
      replicas = [...info.matchAll(/^slave\d+:ip=([^,]+),port=(\d+)/gm)].map((m) => ({
        host: m[1] as string,
        port: Number(m[2]),
      }));
    } catch {
      return warnings;
    }
    const { username, password, tls } = this.#redis.options;
    for (const replica of replicas) {
      const kind = `redis-sentinel (replica ${replica.host}:${replica.port})`;
      const probe = new Redis({
        ...replica,
        username,
        password,
        tls,
        lazyConnect: true,
        connectTimeout: 1000,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
      });
      probe.on("error", () => {
        // Reported below as "could not read".
      });
      try {
        warnings.push(...describePersistence(kind, await readPersistence(probe)));
      } catch (error) {
        warnings.push(
          `${kind}: could not read the persistence settings (${(error as Error).message}); give every replica appendonly yes with appendfsync always`,
        );
      } finally {
        probe.disconnect();
      }
    }
    return warnings;
  }
}

export function createRedisSentinelStore(options: RedisSentinelStoreOptions): RedisCounterStore {
  const url = parseMultiHostUrl(options.url, 26379);
  if (url.path === "" || url.path.includes("/")) {
    throw new ConfigError(
      "TURNOMATIC_STORE: a redis+sentinel:// URL must end with the master name Sentinel monitors, e.g. redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/mymaster",
    );
  }
  const db = Number(url.params.get("db") ?? "0");
  if (!Number.isInteger(db) || db < 0)
    throw new ConfigError(`TURNOMATIC_STORE: db must be a database number; got '${url.params.get("db")}'.`);
  const client = new Redis({
    ...baseRedisOptions(options.commandTimeoutMs),
    sentinels: url.hosts.map((h) => ({ host: h.host, port: h.port })),
    name: url.path,
    role: "master",
    db,
    username: url.username,
    password: url.password,
    sentinelPassword: url.params.get("sentinelPassword") ?? undefined,
    tls: url.tls ? {} : undefined,
    enableTLSForSentinelMode: url.tls,
    failoverDetector: true,
    // A primary demoted to replica answers writes with READONLY: reconnect, which asks the
    // sentinels for the current primary (the failed write did not run; it is not resent).
    reconnectOnError: (error: Error) => (error.message.startsWith("READONLY") ? 1 : false),
    sentinelCommandTimeout: Math.max(500, Math.min(options.commandTimeoutMs, 2000)),
    sentinelRetryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
  });
  defineScripts(client);
  client.on("error", () => {
    // Connection errors surface as failed commands (503s) and in /readyz; ioredis reconnects by itself.
  });
  if (options.onStateChange !== undefined) watchConnection(client, options.onStateChange);
  const ack =
    options.waitReplicas > 0
      ? new ReplicaAck(client, { replicas: options.waitReplicas, timeoutMs: options.waitTimeoutMs })
      : undefined;
  // One primary holds every key, so the reservations of many ids can share one script call.
  const silence = guardAgainstSilence(client, options.commandTimeoutMs, options.onStateChange);
  return new RedisSentinelCounterStore(client, options.keyPrefix, { batchAcrossIds: true, ack, silence });
}
