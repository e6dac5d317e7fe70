/**
 * Redis Cluster store (redis+cluster://h1:p1,h2:p2, rediss+cluster:// for TLS) through ioredis's
 * Cluster client. Each counter is one hash whose key carries the `{id}` hash tag, so a counter and its
 * idempotency keys live in one slot and one script call stays atomic on one primary; ids spread over
 * all primaries.
 *
 * Retries, and why some are off: a MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply means the script did not
 * run, so ioredis may resend it. A connection that closed with the script on the wire is different:
 * the script may have run, and resending would burn a second batch of numbers while the first one is
 * counted nowhere. `retryDelayOnFailover: 0` turns that resend off: the reservation fails (503), and
 * its numbers are "in doubt", a counted gap, never a duplicate.
 *
 * Cluster replication is asynchronous: a failover can lose the last writes a primary acknowledged.
 * Rollback fencing (every reservation carries this process's high-water mark) keeps a running process
 * from re-issuing those numbers; docs/guides/redis.md explains what it cannot cover.
 */
import Redis, { Cluster, type ClusterOptions } from "ioredis";
import { createHash } from "node:crypto";
import calculateSlot from "cluster-key-slot";
import { StoreUnavailableError } from "../domain/errors.ts";
import { clusterMarkerLayout } from "./cluster-markers.ts";
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
import { REPORT_SCRIPT, RESERVE_SCRIPT } from "./redis-scripts.ts";
import type { MultiHostUrl } from "./redis-url.ts";
import { type ClusterStoreUrl, storeUrlOf } from "./store-url.ts";
import { SilenceGuard } from "./silence-guard.ts";

export interface RedisClusterStoreOptions {
  /** redis+cluster://[user:password@]h1:p1,h2:p2 (rediss+cluster:// or ?tls=true for TLS), or as parsed. */
  readonly url: string | ClusterStoreUrl;
  /** Prefix of every key. Default "turnomatic:". */
  readonly keyPrefix: string;
  /** Longest wait for one Redis command (ms); usually the request deadline. */
  readonly commandTimeoutMs: number;
  /** Told about connection state changes (for the logs). Default: none. */
  readonly onStateChange?: ConnectionStateListener;
  /** CA bundle and client certificate for TLS (redis-tls.ts). Default: Node's default roots. */
  readonly tls?: RedisTlsFiles;
  /** What the start-up checks accept (redis-checks.ts). Default: refuse an evicting policy. */
  readonly checks?: CheckOptions;
}

/** ioredis Cluster options; see the header for the retry choices. */
export function clusterOptions(commandTimeoutMs: number, url: MultiHostUrl, tls?: RedisTlsFiles): ClusterOptions {
  const { retryStrategy: _perNodeRetry, ...redisOptions } = baseRedisOptions(commandTimeoutMs);
  return {
    scaleReads: "master",
    // A cluster sends one script call per id (no RESERVE_MANY across slots); auto-pipelining packs
    // them per node. Measured on a 3+3 loopback cluster, 200 reservers on 50 ids: 1.04-1.17x the
    // throughput with it off (two runs, within the noise of a shared machine), so it stays on.
    enableAutoPipelining: true,
    retryDelayOnFailover: 0,
    retryDelayOnClusterDown: 100,
    retryDelayOnTryAgain: 100,
    // A failover moves slots; refresh the map often so requests stop going to a dead primary.
    slotsRefreshInterval: 1000,
    slotsRefreshTimeout: Math.max(1000, commandTimeoutMs),
    clusterRetryStrategy: (attempt: number) => Math.min(100 * attempt, 2000),
    redisOptions: {
      ...redisOptions,
      username: url.username,
      password: url.password,
      tls: url.tls ? tlsOptions(tls) : undefined,
    },
  };
}

const CLUSTER_SCRIPTS = {
  turnoReserve: { lua: RESERVE_SCRIPT, sha: createHash("sha1").update(RESERVE_SCRIPT).digest("hex") },
  turnoReport: { lua: REPORT_SCRIPT, sha: createHash("sha1").update(REPORT_SCRIPT).digest("hex") },
};

class RedisClusterCounterStore extends RedisCounterStore {
  readonly #cluster: Cluster;

  constructor(cluster: Cluster, keyPrefix: string, options: RedisCounterStoreOptions) {
    super("redis-cluster", cluster as unknown as ScriptedClient, keyPrefix, {
      ...options,
      markers: clusterMarkerLayout(keyPrefix),
    });
    this.#cluster = cluster;
  }

  /**
   * Through EVALSHA rather than the defined command: ioredis's auto-pipelining routes a defined
   * command whose number of keys varies by its first argument (the key count, not a key), and would
   * put commands for different slots in one pipeline; for EVALSHA it knows where the keys are.
   */
  protected override async callScript(
    name: "turnoReserve" | "turnoReport",
    keys: readonly string[],
    args: ReadonlyArray<string | number>,
  ): Promise<unknown> {
    const { lua, sha } = CLUSTER_SCRIPTS[name];
    try {
      return await this.#cluster.evalsha(sha, keys.length, ...keys, ...args);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return this.#cluster.eval(lua, keys.length, ...keys, ...args);
    }
  }

  protected override scanTargets(): Array<Pick<Redis, "scan">> {
    return this.#cluster.nodes("master");
  }

  /** One call per primary for the slot markers it serves (16384 routed calls take seconds). */
  protected override async runOnMarkers(
    keys: readonly string[],
    lua: string,
    args: ReadonlyArray<string | number>,
  ): Promise<unknown[]> {
    if (this.#cluster.status !== "ready") await untilReady(this.#cluster, 5000);
    const nodes = new Map(this.#cluster.nodes("master").map((node) => [`${node.options.host}:${node.options.port}`, node]));
    const byNode = new Map<Redis, number[]>();
    keys.forEach((key, i) => {
      const owner = this.#cluster.slots[calculateSlot(key)]?.[0];
      const node = owner === undefined ? undefined : nodes.get(owner);
      if (node === undefined) throw new StoreUnavailableError(`no primary serves the slot of ${key} yet`);
      const indexes = byNode.get(node) ?? [];
      indexes.push(i);
      byNode.set(node, indexes);
    });
    const results: unknown[] = new Array(keys.length);
    await Promise.all(
      [...byNode].map(async ([node, indexes]) => {
        const own = indexes.map((i) => keys[i] as string);
        const replies = (await node.eval(lua, 0, own.length, ...own, ...args)) as unknown[];
        replies.forEach((reply, j) => {
          results[indexes[j] as number] = reply;
        });
      }),
    );
    return results;
  }

  /**
   * Every node, replicas included: a primary that loses data on restart rolls back the ids in its
   * slots, a replica is promoted with its own settings, and any node's eviction policy applies to
   * the counters it holds. The client's pool knows the primaries; CLUSTER NODES lists the replicas
   * (Redis 7 leaves a replica out of CLUSTER SLOTS until it has replicated data), which are read
   * through short-lived probes with the same credentials and TLS settings.
   */
  protected override async checkedNodes(): Promise<CheckedNode[]> {
    const pool = new Map(this.#cluster.nodes("all").map((node) => [`${node.options.host}:${node.options.port}`, node]));
    const nodes: CheckedNode[] = [...pool].map(([where, node]) => ({ label: `redis-cluster node ${where}`, client: node }));
    const [first] = pool.values();
    if (first === undefined) return nodes;
    let listed: string;
    try {
      listed = String(await first.cluster("NODES"));
    } catch {
      return nodes;
    }
    for (const line of listed.split("\n")) {
      const [, address, flags] = line.split(" ");
      if (address === undefined || flags === undefined || /fail|noaddr|handshake/.test(flags)) continue;
      const where = address.split("@")[0] as string;
      if (pool.has(where)) continue;
      const colon = where.lastIndexOf(":");
      const probe = new Redis({
        ...this.#cluster.options.redisOptions,
        host: where.slice(0, colon),
        port: Number(where.slice(colon + 1)),
        ...PROBE_OPTIONS,
      });
      probe.on("error", () => {
        // Reported by the check as settings that cannot be read.
      });
      nodes.push({ label: `redis-cluster node ${where}`, client: probe, dispose: () => probe.disconnect() });
    }
    return nodes;
  }
}

/** Connects to a Redis Cluster through any of the listed nodes (the rest are discovered). */
export function createRedisClusterStore(options: RedisClusterStoreOptions): RedisCounterStore {
  const url = storeUrlOf(options.url, "redis-cluster");
  const settings = clusterOptions(options.commandTimeoutMs, url, options.tls);
  const cluster = new Cluster([...url.hosts], settings);
  defineScripts(cluster);
  cluster.on("error", () => {
    // Node errors surface as failed commands (503s), in /readyz and (watchConnection) in the logs.
  });
  const first = url.hosts[0] as { host: string; port: number };
  const connection = watchConnection(cluster, options.onStateChange, { ...first, tls: settings.redisOptions?.tls });
  // Translation only (silence Infinity): the Cluster client reconnects each node by itself.
  const silence = new SilenceGuard(cluster, Number.POSITIVE_INFINITY, undefined, connection.translate);
  return new RedisClusterCounterStore(cluster, options.keyPrefix, { silence, connection, checks: options.checks });
}

/** Waits (bounded) for the cluster client's first slot map, so the primaries are known. */
function untilReady(cluster: Cluster, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      cluster.off("ready", done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    cluster.once("ready", done);
  });
}
