import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { requireBinary } from "./binaries.ts";
import { freePort, waitFor } from "./ports.ts";
import { type RedisTlsSetup, redisCliTlsArgs, redisTlsArgs } from "./redis-tls.ts";

export interface RedisProcess {
  readonly port: number;
  readonly url: string;
  readonly dir: string;
  /** redis-cli against this server; returns its stdout. */
  cli(...args: string[]): Promise<string>;
  /** SIGKILL, as a crash would. */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory (after kill or stop). */
  restart(): Promise<void>;
  /** Stops it and removes its directory. */
  stop(): Promise<void>;
}

export interface RedisStartOptions {
  /** Extra redis-server arguments, e.g. ["--appendonly", "yes", "--appendfsync", "always"]. */
  readonly args?: readonly string[];
  readonly host?: string;
  /** Port to listen on; default a free one. */
  readonly port?: number;
  /** Serve TLS only, on the port (`--port 0 --tls-port <port>`); the URL is then rediss://. */
  readonly tls?: RedisTlsSetup;
  /** The user redis-cli authenticates as (for servers with `user default off`). */
  readonly cliUser?: Pick<AclUser, "user" | "password">;
}

/** A Redis ACL user for aclArgs; RedisStartOptions.cliUser is one without its rules. */
export interface AclUser {
  readonly user: string;
  readonly password: string;
  /** Command rules after every key and channel (~* &*), e.g. ["+@all", "-@dangerous"]. */
  readonly rules: readonly string[];
}

/** redis-server arguments that turn the `default` user off and add `users` (as a managed Redis has them). */
export function aclArgs(...users: AclUser[]): string[] {
  const defined = users.flatMap(({ user, password, rules }) => ["--user", user, "on", `>${password}`, "~*", "&*", ...rules]);
  return ["--user", "default", "off", ...defined];
}

/** Starts a real redis-server on a free port with its data in a fresh temporary directory. */
export async function startRedis(options: RedisStartOptions = {}): Promise<RedisProcess> {
  const binary = requireBinary("redis-server", "apt-get install redis-server");
  const cliBinary = requireBinary("redis-cli", "apt-get install redis-tools");
  const host = options.host ?? "127.0.0.1";
  const port = options.port ?? (await freePort(host));
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-redis-"));
  let child: Subprocess | undefined;

  const cliArgs = [
    ...(options.tls === undefined ? [] : redisCliTlsArgs(options.tls.pki)),
    ...(options.cliUser === undefined
      ? []
      : ["--user", options.cliUser.user, "--pass", options.cliUser.password, "--no-auth-warning"]),
  ];
  const cli = async (...args: string[]) => {
    const result = Bun.spawn([cliBinary, "-h", host, "-p", String(port), ...cliArgs, ...args], {
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = await new Response(result.stdout).text();
    await result.exited;
    return out.trim();
  };
  const launch = async () => {
    child = Bun.spawn(
      [
        binary,
        "--port",
        String(port),
        "--bind",
        host,
        "--dir",
        dir,
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "no",
        ...(options.tls === undefined ? [] : redisTlsArgs(options.tls, port)),
        ...(options.args ?? []),
      ],
      { stdout: "ignore", stderr: "ignore" },
    );
    await waitFor(`redis-server on ${host}:${port}`, async () => (await cli("PING")) === "PONG");
  };
  const kill = async () => {
    child?.kill("SIGKILL");
    await child?.exited;
  };
  await launch();
  return {
    port,
    url: `${options.tls === undefined ? "redis" : "rediss"}://${host}:${port}`,
    dir,
    cli,
    kill,
    restart: launch,
    stop: async () => {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
