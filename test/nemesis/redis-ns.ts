/**
 * The nemesis run's Redis, inside the topology's redis namespace (UpOptions.externalStore): either a
 * primary + 2 replicas + 3 sentinels (quorum 2, WAIT by the service), or a Redis Cluster of 3
 * primaries + 3 replicas. Every data server has AOF with appendfsync always, as in production. The
 * processes are children of the run; `down` kills them with the namespace.
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { type ClusterState, spawnIn } from "../../scripts/cluster/topology.ts";
import type { Store } from "./schedule.ts";

export const MASTER_NAME = "turnomatic";
const SENTINEL_DATA_PORTS = [6379, 6380, 6381];
const SENTINEL_PORTS = [26379, 26380, 26381];
const CLUSTER_PORTS = [7000, 7001, 7002, 7003, 7004, 7005];

interface DataServer {
  readonly port: number;
  readonly dir: string;
  /** Arguments it was first started with (a replica's include --replicaof). */
  readonly args: readonly string[];
  process: Subprocess | undefined;
}

export interface RedisDeployment {
  readonly store: Store;
  readonly url: string;
  readonly ports: readonly number[];
  /** Ports of the current primaries (Sentinel: the one the sentinels name; Cluster: every master). */
  primaries(): Promise<number[]>;
  /** Ports of the replicas right now. */
  replicas(): Promise<number[]>;
  kill(port: number): void;
  /** Starts a killed server again from its files (AOF; a Cluster node also from nodes.conf). */
  restart(port: number, options?: { asPrimary?: boolean }): Promise<void>;
  /**
   * Deletes a killed server's data (its AOF): the next restart is empty. A Cluster node keeps its
   * nodes.conf, so it comes back as the same node, owning the same slots, with no keys.
   */
  wipe(port: number): void;
  /**
   * Cluster: forbids (true) or allows again (false) the failover of `primary` by its replica
   * (cluster-replica-no-failover), so that its empty restart is not turned into a failover.
   */
  holdFailover(primary: number, held: boolean): Promise<void>;
  /** Cluster: the slot ranges a node serves; undefined under Sentinel (one primary holds every key). */
  slotsOf(port: number): Promise<Array<[number, number]> | undefined>;
  running(port: number): boolean;
  failover(): Promise<string>;
  /** SIGSTOP (true) or SIGCONT (false) every sentinel: while paused, nobody notices a primary's death. */
  pauseSentinels(paused: boolean): void;
  cli(port: number, ...args: string[]): Promise<string>;
  /** Waits until the deployment is whole again (every server up, replicas in sync, Cluster ok). */
  waitHealthy(timeoutMs?: number): Promise<void>;
}

async function output(child: Subprocess): Promise<string> {
  const text = await new Response(child.stdout as ReadableStream<Uint8Array>).text();
  await child.exited;
  return text.trim();
}

export async function deployRedis(state: ClusterState, store: Store): Promise<RedisDeployment> {
  const address = state.hosts.redis?.address as string;
  const root = join(state.stateDir, "nemesis-redis");
  rmSync(root, { recursive: true, force: true });
  const servers = new Map<number, DataServer>();
  const sentinels: Subprocess[] = [];
  const cli = (port: number, ...args: string[]) =>
    output(
      spawnIn(state, "redis", ["redis-cli", "-h", "127.0.0.1", "-p", String(port), ...args], { stdout: "pipe", stderr: "pipe" }),
    );
  const start = (server: DataServer, args: readonly string[]) => {
    mkdirSync(server.dir, { recursive: true });
    const log = join(root, `redis-${server.port}.log`);
    server.process = spawnIn(state, "redis", ["redis-server", ...args, "--logfile", log], { stdout: "ignore", stderr: "ignore" });
  };
  const base = (port: number, dir: string) => [
    "--bind",
    `${address} 127.0.0.1`,
    "--port",
    String(port),
    "--protected-mode",
    "no",
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
    "--dir",
    dir,
  ];
  const ports = store === "sentinel" ? SENTINEL_DATA_PORTS : CLUSTER_PORTS;
  for (const [i, port] of ports.entries()) {
    const dir = join(root, String(port));
    const args =
      store === "sentinel"
        ? [
            ...base(port, dir),
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "0",
            ...(i === 0 ? [] : ["--replicaof", address, String(SENTINEL_DATA_PORTS[0])]),
          ]
        : [
            ...base(port, dir),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "1000",
          ];
    const server: DataServer = { port, dir, args, process: undefined };
    servers.set(port, server);
    start(server, args);
  }
  await waitUntil("every Redis server answers", 15_000, async () => {
    for (const port of ports) if ((await cli(port, "PING")) !== "PONG") return false;
    return true;
  });
  const role = async (port: number) => (await cli(port, "ROLE")).split("\n")[0] ?? "";
  if (store === "sentinel") {
    for (const [i, port] of SENTINEL_PORTS.entries()) {
      const dir = join(root, `sentinel-${port}`);
      mkdirSync(dir, { recursive: true });
      const conf = join(dir, "sentinel.conf");
      writeFileSync(
        conf,
        [
          `port ${port}`,
          `bind ${address} 127.0.0.1`,
          "protected-mode no",
          `dir ${dir}`,
          `logfile ${join(root, `sentinel-${i}.log`)}`,
          `sentinel monitor ${MASTER_NAME} ${address} ${SENTINEL_DATA_PORTS[0]} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
          `sentinel failover-timeout ${MASTER_NAME} 5000`,
          `sentinel parallel-syncs ${MASTER_NAME} 2`,
          "",
        ].join("\n"),
      );
      sentinels.push(spawnIn(state, "redis", ["redis-sentinel", conf], { stdout: "ignore", stderr: "ignore" }));
    }
  } else {
    const create = spawnIn(
      state,
      "redis",
      [
        "redis-cli",
        "--cluster",
        "create",
        ...CLUSTER_PORTS.map((p) => `${address}:${p}`),
        "--cluster-replicas",
        "1",
        "--cluster-yes",
      ],
      { stdout: "pipe", stderr: "pipe" },
    );
    const out = await output(create);
    if ((await create.exited) !== 0) throw new Error(`redis-cli --cluster create failed: ${out}`);
  }
  const sentinelCli = async (...args: string[]) => {
    for (const port of SENTINEL_PORTS) {
      const out = await cli(port, ...args);
      if (out !== "") return out;
    }
    return "";
  };
  /** A Cluster node's own line of CLUSTER NODES, split: id, address, flags, primary's id, ..., slots from field 8. */
  const ownLine = async (port: number) =>
    (await cli(port, "CLUSTER", "NODES"))
      .split("\n")
      .find((line) => line.includes("myself"))
      ?.split(" ") ?? [];
  const running = (port: number) => {
    const child = servers.get(port)?.process;
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  };
  const primaries = async () => {
    if (store === "sentinel") {
      const [, port] = (await sentinelCli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)).split("\n");
      return port === undefined ? [] : [Number(port.trim())];
    }
    const result: number[] = [];
    for (const port of ports) if (running(port) && (await role(port)) === "master") result.push(port);
    return result;
  };
  const replicas = async () => {
    const result: number[] = [];
    const named = await primaries();
    for (const port of ports) if (running(port) && !named.includes(port) && (await role(port)) === "slave") result.push(port);
    return result;
  };
  const waitHealthy = async (timeoutMs = 30_000) => {
    await waitUntil(`the ${store} deployment is whole`, timeoutMs, async () => {
      for (const port of ports) if ((await cli(port, "PING")) !== "PONG") return false;
      if (store === "sentinel") {
        const master = (await sentinelCli("SENTINEL", "MASTER", MASTER_NAME)).split("\n");
        const field = (name: string) => master[master.indexOf(name) + 1];
        if (field("num-slaves") !== "2" || field("flags") !== "master") return false;
        const [primary] = await primaries();
        if (primary === undefined) return false;
        const info = await cli(primary, "INFO", "replication");
        return info.includes("role:master") && (info.match(/state=online/g) ?? []).length === 2;
      }
      for (const port of ports) {
        const info = await cli(port, "CLUSTER", "INFO");
        if (!info.includes("cluster_state:ok") || !info.includes("cluster_slots_ok:16384")) return false;
        const replication = await cli(port, "INFO", "replication");
        if (replication.includes("role:slave") && !replication.includes("master_link_status:up")) return false;
      }
      return (await primaries()).length === 3;
    });
  };
  await waitHealthy();
  return {
    store,
    url:
      store === "sentinel"
        ? `redis+sentinel://${SENTINEL_PORTS.map((p) => `${address}:${p}`).join(",")}/${MASTER_NAME}`
        : `redis+cluster://${CLUSTER_PORTS.map((p) => `${address}:${p}`).join(",")}`,
    ports,
    primaries,
    replicas,
    running,
    kill: (port) => {
      const child = servers.get(port)?.process;
      if (child !== undefined) child.kill("SIGKILL");
    },
    restart: async (port, options = {}) => {
      const server = servers.get(port);
      if (server === undefined || running(port)) return;
      if (store === "cluster") return start(server, server.args);
      // As its rewritten config would say (Sentinel rewrites it at each switch): a primary when it
      // still is the one the sentinels name (or when told), else a replica of the current primary.
      // Its first command line would be wrong after a failover: two replicas of each other.
      const args = withoutReplicaof(server.args);
      if (options.asPrimary === true) return start(server, args);
      const [primary] = await primaries().catch(() => [] as number[]);
      const asReplica = primary !== undefined && primary !== port;
      start(server, asReplica ? [...args, "--replicaof", address, String(primary)] : args);
    },
    wipe: (port) => {
      const server = servers.get(port);
      if (server === undefined) return;
      if (store === "sentinel") return rmSync(server.dir, { recursive: true, force: true });
      for (const name of readdirSync(server.dir)) {
        if (name !== "nodes.conf") rmSync(join(server.dir, name), { recursive: true, force: true });
      }
    },
    holdFailover: async (primary, held) => {
      if (store !== "cluster") return;
      const id = (await cli(primary, "CLUSTER", "MYID")).trim();
      for (const port of ports) {
        if (port === primary || !running(port)) continue;
        const info = await cli(port, "INFO", "replication").catch(() => "");
        const mine = await ownLine(port).catch(() => []);
        if (info.includes("role:slave") && mine[3] === id)
          await cli(port, "CONFIG", "SET", "cluster-replica-no-failover", held ? "yes" : "no");
      }
    },
    slotsOf: async (port) => {
      if (store !== "cluster") return undefined;
      return (await ownLine(port))
        .slice(8)
        .filter((field) => /^\d+(-\d+)?$/.test(field))
        .map((field) => {
          const [lo, hi] = field.split("-").map(Number) as [number, number | undefined];
          return [lo, hi ?? lo];
        });
    },
    failover: async () => {
      if (store === "sentinel") return sentinelCli("SENTINEL", "FAILOVER", MASTER_NAME);
      const [replica] = await replicas();
      if (replica === undefined) return "no replica";
      return `${replica}: ${await cli(replica, "CLUSTER", "FAILOVER")}`;
    },
    pauseSentinels: (paused) => {
      for (const sentinel of sentinels) {
        try {
          process.kill(sentinel.pid, paused ? "SIGSTOP" : "SIGCONT");
        } catch {
          // Gone (the namespace is being removed).
        }
      }
    },
    cli,
    waitHealthy,
  };
}

function withoutReplicaof(args: readonly string[]): readonly string[] {
  const i = args.indexOf("--replicaof");
  return i < 0 ? args : [...args.slice(0, i), ...args.slice(i + 3)];
}

export async function waitUntil(what: string, timeoutMs: number, check: () => Promise<boolean>): Promise<void> {
  const until = performance.now() + timeoutMs;
  while (performance.now() < until) {
    try {
      if (await check()) return;
    } catch {
      // Not yet.
    }
    await Bun.sleep(200);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
}
