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
import { baseRedisOptions, defineScripts, RedisCounterStore, type ScriptedClient } from "./redis-store.ts";
import { parseMultiHostUrl } from "./redis-url.ts";
import { ReplicaAck } from "./replica-ack.ts";

export interface RedisSentinelStoreOptions {
  /** redis+sentinel:// URL, see the header. */
  readonly url: string;
  /** Prefix of every key. Default "turnomatic:". */
  readonly keyPrefix: string;
  /** Longest wait for one Redis command (ms); usually the request deadline. */
  readonly commandTimeoutMs: number;
  /** Replicas that must acknowledge each reservation; 0 = no WAIT. */
  readonly waitReplicas: number;
  /** Longest WAIT (ms). */
  readonly waitTimeoutMs: number;
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
  const ack =
    options.waitReplicas > 0
      ? new ReplicaAck(client, { replicas: options.waitReplicas, timeoutMs: options.waitTimeoutMs })
      : undefined;
  // One primary holds every key, so the reservations of many ids can share one script call.
  return new RedisCounterStore("redis-sentinel", client as unknown as ScriptedClient, options.keyPrefix, {
    batchAcrossIds: true,
    ack,
  });
}
