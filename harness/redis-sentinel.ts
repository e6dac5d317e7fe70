/**
 * A real Sentinel deployment for tests: one primary, two replicas and three sentinels (quorum 2) on
 * free ports. down-after-milliseconds 1000 so a killed primary is replaced within a few seconds.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { requireBinary } from "./binaries.ts";
import { freePort, waitFor } from "./ports.ts";
import { type RedisProcess, startRedis } from "./redis-server.ts";
import { type RedisTlsSetup, redisCliTlsArgs } from "./redis-tls.ts";

export const MASTER_NAME = "turnomatic";

export interface RedisSentinelProcess {
  /** redis+sentinel:// URL listing the three sentinels and the master name. */
  readonly url: string;
  /** Primary first, then the two replicas (roles change after a failover). */
  readonly servers: readonly RedisProcess[];
  readonly sentinelPorts: readonly number[];
  /** The server the sentinels name as primary right now. */
  currentPrimary(): Promise<RedisProcess>;
  /** redis-cli against the first live sentinel. */
  sentinelCli(...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

export interface RedisSentinelOptions {
  /** Extra redis-server arguments for the three data servers. */
  readonly args?: readonly string[];
  /** Sentinel down-after-milliseconds. Default 1000. */
  readonly downAfterMs?: number;
  /** TLS only, for the data servers, replication and the sentinels; the URL is then rediss+sentinel://. */
  readonly tls?: RedisTlsSetup;
  /**
   * An ACL user of the data servers (defined in `args`) that replicas, sentinels and redis-cli
   * authenticate as, for deployments with `user default off`.
   */
  readonly admin?: { readonly user: string; readonly password: string };
}

export async function startRedisSentinel(options: RedisSentinelOptions = {}): Promise<RedisSentinelProcess> {
  const sentinelBinary = requireBinary("redis-sentinel", "apt-get install redis-sentinel");
  const cliBinary = requireBinary("redis-cli", "apt-get install redis-tools");
  const servers: RedisProcess[] = [];
  const sentinels: Subprocess[] = [];
  const sentinelPorts: number[] = [];
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-sentinel-"));
  const stop = async () => {
    for (const sentinel of sentinels) {
      sentinel.kill("SIGKILL");
      await sentinel.exited;
    }
    for (const server of servers) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  const cliAt = async (port: number, ...args: string[]) => {
    const tlsArgs = options.tls === undefined ? [] : redisCliTlsArgs(options.tls.pki);
    const child = Bun.spawn([cliBinary, "-h", "127.0.0.1", "-p", String(port), ...tlsArgs, ...args], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = await new Response(child.stdout).text();
    await child.exited;
    return out.trim();
  };
  try {
    // Replicas announce themselves and may be promoted: they need the same settings as the primary.
    const args = ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0", ...(options.args ?? [])];
    const admin = options.admin;
    const cliUser = admin;
    const primary = await startRedis({ args, tls: options.tls, cliUser });
    servers.push(primary);
    const replicaAuth = admin === undefined ? [] : ["--masteruser", admin.user, "--masterauth", admin.password];
    for (let i = 0; i < 2; i++) {
      const replicaArgs = [...args, ...replicaAuth, "--replicaof", "127.0.0.1", String(primary.port)];
      servers.push(await startRedis({ args: replicaArgs, tls: options.tls, cliUser }));
    }
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const conf = join(dir, `sentinel-${i}.conf`);
      writeFileSync(
        conf,
        [
          ...(options.tls === undefined ? [`port ${port}`] : sentinelTlsConfig(options.tls, port)),
          "bind 127.0.0.1",
          "protected-mode no",
          `dir ${dir}`,
          `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${primary.port} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} ${options.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${MASTER_NAME} 5000`,
          `sentinel parallel-syncs ${MASTER_NAME} 2`,
          ...(options.admin === undefined
            ? []
            : [
                `sentinel auth-user ${MASTER_NAME} ${options.admin.user}`,
                `sentinel auth-pass ${MASTER_NAME} ${options.admin.password}`,
              ]),
          "",
        ].join("\n"),
      );
      sentinels.push(Bun.spawn([sentinelBinary, conf], { stdout: "ignore", stderr: "ignore" }));
      sentinelPorts.push(port);
    }
    await waitFor(
      "3 sentinels that see the primary, 2 replicas and each other",
      async () => {
        for (const port of sentinelPorts) {
          const master = await cliAt(port, "SENTINEL", "MASTER", MASTER_NAME);
          const fields = master.split("\n");
          const field = (name: string) => fields[fields.indexOf(name) + 1];
          if (field("num-slaves") !== "2" || field("num-other-sentinels") !== "2") return false;
        }
        const replication = await primary.cli("INFO", "replication");
        return replication.includes("connected_slaves:2");
      },
      30_000,
      200,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  const sentinelCli = async (...args: string[]) => {
    for (const port of sentinelPorts) {
      const out = await cliAt(port, ...args);
      if (out !== "") return out;
    }
    return "";
  };
  return {
    url: `${options.tls === undefined ? "redis" : "rediss"}+sentinel://${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(",")}/${MASTER_NAME}`,
    servers,
    sentinelPorts,
    sentinelCli,
    currentPrimary: async () => {
      const [, port] = (await sentinelCli("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)).split("\n");
      const server = servers.find((s) => String(s.port) === port?.trim());
      if (server === undefined) throw new Error(`sentinels name an unknown primary port ${port}`);
      return server;
    },
    stop,
  };
}

/** sentinel.conf lines for TLS only: clients, other sentinels and the data servers all over TLS. */
function sentinelTlsConfig(tls: RedisTlsSetup, port: number): string[] {
  const cert = tls.serverCert ?? tls.pki.server;
  return [
    "port 0",
    `tls-port ${port}`,
    `tls-cert-file ${cert.cert}`,
    `tls-key-file ${cert.key}`,
    `tls-ca-cert-file ${tls.pki.ca}`,
    `tls-auth-clients ${tls.authClients ?? "no"}`,
    "tls-replication yes",
  ];
}
