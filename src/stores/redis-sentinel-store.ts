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
import { type ConnectionStateListener, watchConnection } from "./connection-events.ts";
import { type CheckedNode, type CheckOptions, PROBE_OPTIONS } from "./redis-checks.ts";
import {
  baseRedisOptions,
  defineScripts,
  RedisCounterStore,
  type RedisCounterStoreOptions,
  type ScriptedClient,
} from "./redis-store.ts";
import { type RedisTlsFiles, tlsOptions } from "./redis-tls.ts";
import type { HostPort } from "./redis-url.ts";
import { type ListedReplica, LiveReplicaCount, ReplicaAck } from "./replica-ack.ts";
import { guardAgainstSilence } from "./silence-guard.ts";
import { type SentinelStoreUrl, storeUrlOf } from "./store-url.ts";

export interface RedisSentinelStoreOptions {
  /** redis+sentinel:// URL, see the header, or as parsed. */
  readonly url: string | SentinelStoreUrl;
  /** Prefix of every key. Default "turnomatic:". */
  readonly keyPrefix: string;
  /** Longest wait for one Redis command (ms); usually the request deadline. */
  readonly commandTimeoutMs: number;
  /** Told about connection state changes (for the logs). Default: none. */
  readonly onStateChange?: ConnectionStateListener;
  /**
   * Replicas that must acknowledge each reservation; 0 = no WAIT; "all" = every replica Sentinel
   * could promote, at least one (replica-ack.ts LiveReplicaCount).
   */
  readonly waitReplicas: number | "all";
  /** Longest WAIT (ms). */
  readonly waitTimeoutMs: number;
  /** CA bundle and client certificate for TLS, to sentinels and data nodes alike. Default: none. */
  readonly tls?: RedisTlsFiles;
  /** What the start-up checks accept (redis-checks.ts). Default: refuse an evicting policy. */
  readonly checks?: CheckOptions;
}

/**
 * Any replica may become the primary, so the start-up checks read the replicas too: a replica
 * without persistence that gets promoted and restarts loses everything. The primary lists them in
 * INFO replication; a user without INFO (Redis 7 puts it in @dangerous) has them from the sentinels.
 */
class RedisSentinelCounterStore extends RedisCounterStore {
  readonly #redis: Redis;
  readonly #sentinels: SentinelLister;
  readonly #liveReplicas: LiveReplicaCount | undefined;

  constructor(
    redis: Redis,
    keyPrefix: string,
    options: RedisCounterStoreOptions,
    sentinels: SentinelLister,
    liveReplicas: LiveReplicaCount | undefined,
  ) {
    super("redis-sentinel", redis as unknown as ScriptedClient, keyPrefix, options);
    this.#redis = redis;
    this.#sentinels = sentinels;
    this.#liveReplicas = liveReplicas;
  }

  override async close(): Promise<void> {
    this.#liveReplicas?.close();
    this.#sentinels.close();
    await super.close();
  }

  protected override async checkedNodes(): Promise<CheckedNode[]> {
    const nodes: CheckedNode[] = [{ label: "redis-sentinel primary", client: this.#redis }];
    for (const replica of await this.#replicas()) {
      const probe = this.#probe(replica);
      nodes.push({
        label: `redis-sentinel replica ${replica.host}:${replica.port}`,
        client: probe,
        dispose: () => probe.disconnect(),
      });
    }
    return nodes;
  }

  async #replicas(): Promise<HostPort[]> {
    try {
      const info = await this.#redis.info("replication");
      return [...info.matchAll(/^slave\d+:ip=([^,]+),port=(\d+)/gm)].map((m) => ({ host: m[1] as string, port: Number(m[2]) }));
    } catch {
      return this.#replicasFromSentinels();
    }
  }

  /** SENTINEL REPLICAS <name> from the first sentinel that answers; [] when none does. */
  async #replicasFromSentinels(): Promise<HostPort[]> {
    const replies = await this.#sentinels.replicas();
    return (replies ?? []).map((fields) => ({ host: field(fields, "ip"), port: Number(field(fields, "port")) }));
  }

  /** A short-lived connection to one replica, with the data nodes' credentials and TLS settings. */
  #probe(replica: HostPort): Redis {
    const { username, password, tls } = this.#redis.options;
    const probe = new Redis({ ...replica, username, password, tls, ...PROBE_OPTIONS });
    probe.on("error", () => {
      // Reported by the check as settings that cannot be read.
    });
    return probe;
  }
}

export function createRedisSentinelStore(options: RedisSentinelStoreOptions): RedisCounterStore {
  const url = storeUrlOf(options.url, "redis-sentinel");
  const tlsSettings = url.tls ? tlsOptions(options.tls) : undefined;
  const client = new Redis({
    ...baseRedisOptions(options.commandTimeoutMs),
    sentinels: url.hosts.map((h) => ({ host: h.host, port: h.port })),
    name: url.masterName,
    role: "master",
    db: url.db,
    username: url.username,
    password: url.password,
    sentinelPassword: url.params.get("sentinelPassword") ?? undefined,
    // TLS to the data nodes (tls + enableTLSForSentinelMode) and to the sentinels (sentinelTLS).
    tls: tlsSettings,
    enableTLSForSentinelMode: url.tls,
    sentinelTLS: tlsSettings,
    failoverDetector: true,
    // A primary demoted to replica answers writes with READONLY: reconnect, which asks the
    // sentinels for the current primary (the failed write did not run; it is not resent).
    reconnectOnError: (error: Error) => (error.message.startsWith("READONLY") ? 1 : false),
    sentinelCommandTimeout: Math.max(500, Math.min(options.commandTimeoutMs, 2000)),
    sentinelRetryStrategy: (attempt: number) => Math.min(100 * attempt, 1000),
  });
  defineScripts(client);
  client.on("error", () => {
    // Connection errors surface as failed commands (503s), in /readyz and (watchConnection) in the logs.
  });
  const first = url.hosts[0] as { host: string; port: number };
  const connection = watchConnection(client, options.onStateChange, { ...first, tls: tlsSettings });
  const lister = new SentinelLister(client);
  const liveReplicas =
    options.waitReplicas === "all"
      ? new LiveReplicaCount(
          () => lister.listed(),
          1000,
          options.waitTimeoutMs,
          (change) =>
            options.onStateChange?.("replicas", {
              replicas: change.replicas,
              counted: change.counted.join(" "),
              left: change.left.join("; "),
            }),
        )
      : undefined;
  const replicas = liveReplicas === undefined ? (options.waitReplicas as number) : () => liveReplicas.current();
  const ack =
    replicas !== 0
      ? new ReplicaAck(client, { replicas, timeoutMs: options.waitTimeoutMs, translate: connection.translate })
      : undefined;
  // One primary holds every key, so the reservations of many ids can share one script call.
  const silence = guardAgainstSilence(client, options.commandTimeoutMs, options.onStateChange, connection.translate);
  return new RedisSentinelCounterStore(
    client,
    options.keyPrefix,
    {
      batchAcrossIds: true,
      ack,
      silence,
      connection,
      checks: options.checks,
    },
    lister,
    liveReplicas,
  );
}

/**
 * SENTINEL REPLICAS <name> (each replica a flat list of field, value), asked of the sentinels in
 * turn. The connection to the one that answered is kept for the next call (the WAIT count asks once a
 * second); one that fails is dropped and the next sentinel tried.
 */
class SentinelLister {
  readonly #client: Redis;
  #kept: Redis | undefined;
  #closed = false;

  constructor(client: Redis) {
    this.#client = client;
  }

  /** undefined when no sentinel answers. */
  async replicas(): Promise<string[][] | undefined> {
    const { sentinels, name } = this.#client.options;
    if (this.#kept !== undefined) {
      const replies = await this.#ask(this.#kept, name as string);
      if (replies !== undefined) return replies;
    }
    for (const sentinel of sentinels ?? []) {
      const probe = this.#connect(sentinel);
      const replies = await this.#ask(probe, name as string);
      if (replies !== undefined) {
        // Kept unless closed meanwhile or another call kept one first (then this one goes).
        if (this.#closed || this.#kept !== undefined) probe.disconnect();
        else this.#kept = probe;
        return replies;
      }
    }
    return undefined;
  }

  /** The replicas as LiveReplicaCount reads them. */
  async listed(): Promise<ListedReplica[] | undefined> {
    const replies = await this.replicas();
    return replies?.map((fields) => ({
      name: field(fields, "name"),
      flags: field(fields, "flags"),
      roleReported: field(fields, "role-reported"),
      masterLinkStatus: field(fields, "master-link-status"),
      masterLinkDownTimeMs: Number(field(fields, "master-link-down-time")),
      downAfterMs: Number(field(fields, "down-after-milliseconds")),
    }));
  }

  close(): void {
    this.#closed = true;
    this.#kept?.disconnect();
    this.#kept = undefined;
  }

  async #ask(probe: Redis, name: string): Promise<string[][] | undefined> {
    try {
      return (await probe.call("SENTINEL", "REPLICAS", name)) as string[][];
    } catch {
      probe.disconnect();
      if (this.#kept === probe) this.#kept = undefined;
      return undefined;
    }
  }

  #connect(sentinel: Partial<HostPort>): Redis {
    const { sentinelUsername, sentinelPassword, sentinelTLS } = this.#client.options;
    const probe = new Redis({
      host: sentinel.host,
      port: sentinel.port,
      username: sentinelUsername ?? undefined,
      password: sentinelPassword ?? undefined,
      tls: sentinelTLS,
      ...PROBE_OPTIONS,
    });
    probe.on("error", () => {});
    return probe;
  }
}

/** The value after `name` in a flat field, value list ("" when absent). */
function field(fields: readonly string[], name: string): string {
  const at = fields.indexOf(name);
  return at < 0 ? "" : (fields[at + 1] ?? "");
}
