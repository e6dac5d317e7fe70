/**
 * The compose topology, run for real on loopback (no Docker engine here): HAProxy with
 * deploy/compose/haproxy.cfg, two app processes with the compose file's app environment (drain
 * delay, shutdown timeout), and redis-server with the compose file's command line. Only addresses
 * and one limit change: HAProxy's `server-template` over Docker's DNS becomes two loopback servers,
 * the listeners move to free ports, maxconn fits this machine's descriptor limit. Every other
 * directive (retries, redispatch, health checks, timeouts) is the file's own.
 *
 * Under load, each replica in turn gets SIGTERM (as `docker compose up` does on a new image), exits,
 * and starts again. The drain timing must hide that from clients: zero failed requests, and the
 * history checker finds no duplicate, gap or order violation over the full history.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { parse } from "yaml";
import { requireBinary } from "../../../harness/binaries.ts";
import { checkHistory, formatVerdict } from "../../../harness/history-checker.ts";
import { freePort, waitFor } from "../../../harness/ports.ts";
import { type RedisProcess, startRedis } from "../../../harness/redis-server.ts";
import { type ServiceProcess, startService } from "../../../harness/service.ts";
import { readCounters, runTurnLoad } from "../../../harness/turn-load.ts";

const REPO = resolve(import.meta.dir, "../../..");
type Json = Record<string, unknown>;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The compose HAProxy config with loopback addresses; fails if the lines it rewrites are gone. */
function loopbackHaproxyConfig(frontendPort: number, statsPort: number, appPorts: readonly number[]): string {
  const original = readFileSync(join(REPO, "deploy/compose/haproxy.cfg"), "utf8");
  const rewrites: [RegExp, string][] = [
    [/^ {2}server-template app \d+ app:7017$/m, appPorts.map((port, i) => `  server app${i + 1} 127.0.0.1:${port}`).join("\n")],
    [/^ {2}bind :8080$/m, `  bind 127.0.0.1:${frontendPort}`],
    [/^ {2}bind :8404$/m, `  bind 127.0.0.1:${statsPort}`],
    [/^ {2}log stdout .*$/m, ""],
    // 20000 connections need ~40000 descriptors; containers get that, this test machine may not.
    [/^ {2}maxconn 20000$/m, "  maxconn 4000"],
  ];
  let config = original;
  for (const [pattern, replacement] of rewrites) {
    if (!pattern.test(config)) throw new Error(`deploy/compose/haproxy.cfg no longer has a line matching ${pattern}`);
    config = config.replace(pattern, replacement);
  }
  return config;
}

async function startHaproxy(config: string, statsPort: number): Promise<Subprocess> {
  const haproxy = requireBinary("haproxy");
  const directory = mkdtempSync(join(tmpdir(), "turnomatic-haproxy-"));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  const path = join(directory, "haproxy.cfg");
  writeFileSync(path, config);
  const child = Bun.spawn([haproxy, "-db", "-f", path], { stdout: "ignore", stderr: "pipe" });
  cleanups.push(() => child.kill("SIGKILL"));
  await waitFor("haproxy", async () => (await fetch(`http://127.0.0.1:${statsPort}/health`)).ok);
  return child;
}

test("compose topology: a rolling restart of both replicas under load fails no request and issues no number twice", async () => {
  const compose = parse(readFileSync(join(REPO, "docker-compose.yml"), "utf8")) as { services: Record<string, Json> };
  const redisArgs = (compose.services.redis!.command as string[]).slice(1);
  const dirAt = redisArgs.indexOf("--dir");
  redisArgs.splice(dirAt, 2); // the test's own data directory instead of the container's /data
  const redis: RedisProcess = await startRedis({ args: redisArgs });
  cleanups.push(() => redis.stop());
  expect(await redis.cli("config", "get", "appendfsync")).toContain("always");

  // Addresses are the test's (free ports, this Redis); "${TURNOMATIC_ADMIN_TOKEN:-}" is compose's to fill in.
  const { PORT, METRICS_PORT, TURNOMATIC_STORE, TURNOMATIC_ADMIN_TOKEN, ...composeEnv } = compose.services.app!
    .environment as Record<string, string>;
  expect({ PORT, METRICS_PORT, TURNOMATIC_STORE }).toEqual({
    PORT: "7017",
    METRICS_PORT: "9464",
    TURNOMATIC_STORE: "redis://redis:6379",
  });
  // biome-ignore lint/suspicious/noTemplateCurlyInString: compose's interpolation syntax, left for compose to fill in
  expect(TURNOMATIC_ADMIN_TOKEN).toBe("${TURNOMATIC_ADMIN_TOKEN:-}");
  // One change for this shared test machine: Redis fsyncs every write (appendfsync always), and a busy
  // disk here can stall an fsync past the default 1 s deadline, which the service rightly answers with
  // 503s that have nothing to do with the restarts under test. 4 s stays below HAProxy's 5 s.
  const env: Record<string, string> = { ...composeEnv, TURNOMATIC_LOG_LEVEL: "info", TURNOMATIC_DEADLINE_MS: "4000" };
  const ports = [await freePort(), await freePort()];
  const replicas: ServiceProcess[] = [];
  for (const port of ports) replicas.push(await startService({ store: redis.url, env, port }));
  cleanups.push(() => Promise.all(replicas.map((replica) => replica.stop("SIGKILL"))));

  const [frontendPort, statsPort] = [await freePort(), await freePort()];
  await startHaproxy(loopbackHaproxyConfig(frontendPort, statsPort, ports), statsPort);
  const url = `http://127.0.0.1:${frontendPort}`;
  const ids = ["roll-a", "roll-b", "roll-c", "roll-d"];
  // Both servers up (rise 2 at 1 s) before the load starts.
  await waitFor("both replicas in HAProxy", async () => {
    const stats = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text();
    return stats.split("\n").filter((line) => /^turnomatic_app,app\d,.*,UP,/.test(line)).length === 2;
  });

  const drainMs = Number(env.TURNOMATIC_DRAIN_DELAY_MS);
  const load = runTurnLoad({ url, ids, clients: 16, requests: 200_000, maxDurationMs: 2 * drainMs + 9_000, timeoutMs: 5000 });
  const exits: number[] = [];
  const events: [string, number][] = [];
  const logs: string[] = [];
  for (const index of [0, 1]) {
    await Bun.sleep(1000);
    const stopping = replicas[index]!;
    events.push([`SIGTERM app${index + 1}`, performance.now()]);
    exits.push(await stopping.stop("SIGTERM"));
    events.push([`exited app${index + 1}`, performance.now()]);
    logs.push(
      stopping
        .logs()
        .split("\n")
        .filter((line) => line.includes('"shutdown.'))
        .join("\n"),
    );
    replicas[index] = await startService({ store: redis.url, env, port: ports[index] });
    // Back in HAProxy (rise 2 at 1 s) before the other one goes.
    await Bun.sleep(2500);
  }
  const history = await load;

  expect(exits).toEqual([0, 0]);
  const failed = history.filter((entry) => entry.status !== 200);
  const verdict = checkHistory(history, { after: await readCounters(url, ids) });
  if (!verdict.ok || failed.length > 0) {
    // Enough to place each failure against the restarts: status (0 = no answer) and times (ms).
    const when = failed
      .slice(0, 20)
      .map((entry) => `${entry.id} status ${entry.status} sent ${entry.sentAt.toFixed(0)} done ${entry.doneAt.toFixed(0)}`);
    throw new Error(
      `${formatVerdict(verdict)}\nevents: ${JSON.stringify(events)}\nfailed: ${when.join("; ")}\nlogs: ${logs.join("")}`,
    );
  }
  expect({ requests: history.length > 500, failed: failed.length, duplicates: verdict.totals.duplicates }).toEqual({
    requests: true,
    failed: 0,
    duplicates: 0,
  });
  expect(verdict.totals.gaps).toBe(0);
}, 60_000);
