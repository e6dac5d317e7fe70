/**
 * A real Redis Cluster for tests: 3 primaries + 3 replicas (redis-server --cluster-enabled yes on free
 * ports, joined by `redis-cli --cluster create --cluster-replicas 1`). Node timeout 1 s so a killed
 * primary's replica takes over within a few seconds.
 */
import { requireBinary } from "./binaries.ts";
import { freePort, waitFor } from "./ports.ts";
import { type RedisProcess, startRedis } from "./redis-server.ts";
import { type RedisTlsSetup, redisCliTlsArgs } from "./redis-tls.ts";

export interface RedisClusterProcess {
  /** redis+cluster:// URL listing every node. */
  readonly url: string;
  readonly nodes: readonly RedisProcess[];
  /** The nodes that are primaries right now (from CLUSTER NODES), with the slots count they serve. */
  primaries(): Promise<RedisProcess[]>;
  /** Each primary with its replicas, from CLUSTER NODES as a live node sees it. */
  shards(): Promise<Array<{ primary: RedisProcess; replicas: RedisProcess[] }>>;
  /** Waits until every live node reports cluster_state:ok and every slot is served. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  /** Empties every primary (FLUSHALL), for a fresh test. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

export interface RedisClusterOptions {
  /** Extra redis-server arguments for every node (e.g. AOF settings). */
  readonly args?: readonly string[];
  /** cluster-node-timeout (ms). Default 1000. */
  readonly nodeTimeoutMs?: number;
  /** TLS only, for clients and the cluster bus (`tls-cluster yes`); the URL is then rediss+cluster://. */
  readonly tls?: RedisTlsSetup;
}

export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<RedisClusterProcess> {
  const cliBinary = requireBinary("redis-cli", "apt-get install redis-tools");
  const nodes: RedisProcess[] = [];
  const stop = async () => {
    for (const node of nodes) await node.stop();
  };
  try {
    const args = [
      "--cluster-enabled",
      "yes",
      "--cluster-config-file",
      "nodes.conf",
      "--cluster-node-timeout",
      String(options.nodeTimeoutMs ?? 1000),
      ...(options.tls === undefined ? [] : ["--tls-cluster", "yes"]),
      ...(options.args ?? []),
    ];
    // The bus port defaults to port + 10000, which may be taken or past 65535: pick one.
    for (let i = 0; i < 6; i++)
      nodes.push(await startRedis({ args: [...args, "--cluster-port", String(await freePort())], tls: options.tls }));
    const create = Bun.spawn(
      [
        cliBinary,
        ...(options.tls === undefined ? [] : redisCliTlsArgs(options.tls.pki)),
        "--cluster",
        "create",
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        "--cluster-replicas",
        "1",
        "--cluster-yes",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = await new Response(create.stdout).text();
    if ((await create.exited) !== 0) throw new Error(`redis-cli --cluster create failed: ${out}`);
  } catch (error) {
    await stop();
    throw error;
  }

  const live = async () => {
    const alive: RedisProcess[] = [];
    for (const node of nodes) if ((await node.cli("PING")) === "PONG") alive.push(node);
    return alive;
  };
  const primaries = async () => {
    const alive = await live();
    const result: RedisProcess[] = [];
    for (const node of alive) {
      const role = await node.cli("ROLE");
      if (role.startsWith("master")) result.push(node);
    }
    return result;
  };
  const waitHealthy = async (timeoutMs = 30_000) => {
    await waitFor(
      "cluster_state:ok on every live node, 3 primaries with replicas in sync",
      async () => {
        const alive = await live();
        for (const node of alive) {
          const info = await node.cli("CLUSTER", "INFO");
          if (!info.includes("cluster_state:ok") || !info.includes("cluster_slots_ok:16384")) return false;
        }
        for (const node of alive) {
          const replication = await node.cli("INFO", "replication");
          if (replication.includes("role:slave") && !replication.includes("master_link_status:up")) return false;
        }
        return (await primaries()).length === 3;
      },
      timeoutMs,
      200,
    );
  };
  try {
    await waitHealthy();
  } catch (error) {
    await stop();
    throw error;
  }
  const shards = async () => {
    const [observer] = await live();
    if (observer === undefined) throw new Error("no live cluster node");
    const lines = (await observer.cli("CLUSTER", "NODES")).split("\n").map((line) => line.split(" "));
    const byId = new Map(lines.map((f) => [f[0] as string, f]));
    const node = (fields: string[]) => {
      const port = Number((fields[1] ?? "").split(":")[1]?.split("@")[0]);
      const found = nodes.find((n) => n.port === port);
      if (found === undefined) throw new Error(`CLUSTER NODES names an unknown port ${port}`);
      return found;
    };
    const result: Array<{ primary: RedisProcess; replicas: RedisProcess[] }> = [];
    for (const fields of lines) {
      if (!(fields[2] ?? "").includes("master") || (fields[2] ?? "").includes("fail")) continue;
      const replicas = lines.filter((f) => f[3] === fields[0] && byId.has(f[0] as string)).map(node);
      result.push({ primary: node(fields), replicas });
    }
    return result;
  };
  return {
    shards,
    url: `${options.tls === undefined ? "redis" : "rediss"}+cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(",")}`,
    nodes,
    primaries,
    waitHealthy,
    flush: async () => {
      for (const node of await primaries()) await node.cli("FLUSHALL");
    },
    stop,
  };
}
