/**
 * Issue 13 item 2: a Redis whose maxmemory-policy can evict counters is refused at start (exit 2,
 * naming maxmemory-policy and the override), on every node of Sentinel and Cluster topologies, with
 * CONFIG refused (INFO memory then), and only warned about when neither can be read. Real
 * redis-server processes throughout.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { ConfigError } from "../../src/config.ts";
import { createRedisClusterStore } from "../../src/stores/redis-cluster-store.ts";
import { createRedisSentinelStore } from "../../src/stores/redis-sentinel-store.ts";
import { createRedisStore } from "../../src/stores/redis-store.ts";
import { startRedisCluster } from "../../harness/redis-cluster.ts";
import { startRedisSentinel } from "../../harness/redis-sentinel.ts";
import { type AclUser, aclArgs, type RedisProcess, type RedisStartOptions, startRedis } from "../../harness/redis-server.ts";
import { startService } from "../../harness/service.ts";

const DURABLE = ["--appendonly", "yes", "--appendfsync", "always"];
/** A user that may not run CONFIG. */
const NO_CONFIG: AclUser = { user: "app", password: "pw", rules: ["+@all", "-config"] };
const started: RedisProcess[] = [];
afterAll(async () => {
  for (const server of started) await server.stop();
});
async function redis(options: RedisStartOptions): Promise<RedisProcess> {
  const server = await startRedis(options);
  started.push(server);
  return server;
}

/** Runs the service to its exit (or kills it after `ms`); returns the exit code and stderr. */
async function runToExit(store: string, args: string[] = [], ms = 10_000): Promise<{ code: number | null; stderr: string }> {
  const child = Bun.spawn([process.execPath, `${import.meta.dir}/../../src/main.ts`, ...args], {
    env: { ...process.env, TURNOMATIC_STORE: store, PORT: "0", METRICS_PORT: "0", HOST: "127.0.0.1" },
    stdout: "ignore",
    stderr: "pipe",
  });
  const timer = setTimeout(() => child.kill("SIGKILL"), ms);
  const stderr = await new Response(child.stderr).text();
  const code = await child.exited;
  clearTimeout(timer);
  return { code: child.signalCode === null ? code : null, stderr };
}

async function gauge(metricsPort: number): Promise<string | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return /turnomatic_store_durability_warning\{store="[^"]+"\} (\d)/.exec(text)?.[1];
}

describe("maxmemory-policy on a single Redis", () => {
  test("allkeys-lru: refused at start with exit 2, naming maxmemory-policy and --redis-allow-eviction", async () => {
    const server = await redis({ args: [...DURABLE, "--maxmemory", "100mb", "--maxmemory-policy", "allkeys-lru"] });
    const { code, stderr } = await runToExit(server.url);
    expect(code).toBe(2);
    expect(stderr).toContain("maxmemory-policy can evict counters");
    expect(stderr).toContain("allkeys-lru");
    expect(stderr).toContain("--redis-allow-eviction");
  });

  test("allkeys-lru with --redis-allow-eviction: starts, warns, gauge 1", async () => {
    const server = await redis({ args: [...DURABLE, "--maxmemory-policy", "allkeys-lfu"] });
    const service = await startService({ store: server.url, args: ["--redis-allow-eviction", "true"] });
    try {
      expect(service.logs()).toContain("maxmemory-policy is allkeys-lfu");
      expect(await gauge(service.metricsPort)).toBe("1");
    } finally {
      await service.stop();
    }
  });

  test("volatile-lru: accepted (counters carry no TTL), said in one info line; gauge 0 with AOF always", async () => {
    const server = await redis({ args: [...DURABLE, "--maxmemory-policy", "volatile-lru"] });
    const service = await startService({ store: server.url });
    try {
      const note = service
        .logs()
        .split("\n")
        .find((line) => line.includes("maxmemory-policy is volatile-lru"));
      expect(note).toContain('"level":"info"');
      expect(note).toContain("counters carry no TTL");
      expect(await gauge(service.metricsPort)).toBe("0");
    } finally {
      await service.stop();
    }
  });

  test("CONFIG refused: the policy is read from INFO memory, and still refused", async () => {
    const server = await redis({
      args: [...DURABLE, "--maxmemory-policy", "allkeys-random", ...aclArgs(NO_CONFIG)],
      cliUser: NO_CONFIG,
    });
    const store = createRedisStore({
      url: server.url.replace("redis://", "redis://app:pw@"),
      keyPrefix: "e:",
      commandTimeoutMs: 1000,
    });
    try {
      const failure = await store.checkAtStart(2000).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ConfigError);
      expect((failure as Error).message).toContain("allkeys-random");
    } finally {
      await store.close();
    }
  });

  test("CONFIG refused, INFO allowed, AOF on: appendfsync cannot be verified (unknown), not a refusal", async () => {
    const server = await redis({ args: [...DURABLE, ...aclArgs(NO_CONFIG)], cliUser: NO_CONFIG });
    const store = createRedisStore({
      url: server.url.replace("redis://", "redis://app:pw@"),
      keyPrefix: "e:",
      commandTimeoutMs: 1000,
    });
    try {
      const check = await store.checkAtStart(2000);
      expect(check.state).toBe("unknown");
      if (check.state !== "unreachable") expect(check.warnings.join("\n")).toContain("appendfsync cannot be verified");
    } finally {
      await store.close();
    }
  });

  test("neither CONFIG nor INFO readable: warns that it cannot verify, starts anyway (gauge 2)", async () => {
    const managed: AclUser = { user: "app", password: "pw", rules: ["+@all", "-@dangerous"] };
    const server = await redis({ args: ["--maxmemory-policy", "allkeys-lru", ...aclArgs(managed)], cliUser: managed });
    const service = await startService({ store: server.url.replace("redis://", "redis://app:pw@") });
    try {
      expect(service.logs()).toContain("cannot be verified with this Redis user");
      expect(service.logs()).toContain("maxmemory-policy is noeviction");
      expect(await gauge(service.metricsPort)).toBe("2");
    } finally {
      await service.stop();
    }
  });
});

describe("maxmemory-policy on every node", () => {
  test("Cluster: one replica with allkeys-lru is enough to refuse, and it is named", async () => {
    const cluster = await startRedisCluster({ args: DURABLE });
    const store = createRedisClusterStore({ url: cluster.url, keyPrefix: "e:", commandTimeoutMs: 1000 });
    try {
      const [shard] = await cluster.shards();
      const replica = shard?.replicas[0];
      if (replica === undefined) throw new Error("no replica");
      expect((await store.checkAtStart(5000)).state).toBe("ok");
      await replica.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lru");
      const failure = await store.checkAtStart(5000).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ConfigError);
      expect((failure as Error).message).toContain(`redis-cluster node 127.0.0.1:${replica.port}: allkeys-lru`);
    } finally {
      await store.close();
      await cluster.stop();
    }
  });

  test("Sentinel: a replica with allkeys-lfu is refused, and named", async () => {
    const deployment = await startRedisSentinel({ args: DURABLE });
    const store = createRedisSentinelStore({
      url: deployment.url,
      keyPrefix: "e:",
      commandTimeoutMs: 1000,
      waitReplicas: 1,
      waitTimeoutMs: 500,
    });
    try {
      expect((await store.checkAtStart(5000)).state).toBe("ok");
      const replica = deployment.servers[1];
      if (replica === undefined) throw new Error("no replica");
      await replica.cli("CONFIG", "SET", "maxmemory-policy", "allkeys-lfu");
      const failure = await store.checkAtStart(5000).catch((error: unknown) => error);
      expect(failure).toBeInstanceOf(ConfigError);
      expect((failure as Error).message).toContain(`redis-sentinel replica 127.0.0.1:${replica.port}: allkeys-lfu`);
      const { code, stderr } = await runToExit(deployment.url);
      expect(code).toBe(2);
      expect(stderr).toContain("maxmemory-policy");
    } finally {
      await store.close();
      await deployment.stop();
    }
  });
});
