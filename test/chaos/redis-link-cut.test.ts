/**
 * The link to Redis is cut under load and comes back: the service must answer again within a couple
 * of seconds of the link's return, not when TCP's backed-off retransmission timer next fires on the
 * old connection (src/stores/silence-guard.ts), and the history must hold I1–I4 with no duplicate.
 *
 * Redis runs in a network namespace the test creates, reached through a second namespace acting as
 * a router; the cut makes the router drop everything (see `cut`), so interfaces stay up and packets
 * vanish in transit, as on a real cut. Needs root; namespaces and routes are removed afterwards.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { requireBinary, requireRoot } from "../../harness/binaries.ts";
import { checkHistory, formatVerdict } from "../../harness/history-checker.ts";
import { waitFor } from "../../harness/ports.ts";
import { type ServiceProcess, startService } from "../../harness/service.ts";
import { readCounters, runTurnLoad } from "../../harness/turn-load.ts";

const FULL = process.env.TURNOMATIC_FULL === "1";
const TAG = `tmcut${process.pid % 100_000}`;
const ROUTER_NS = `${TAG}r`;
const REDIS_NS = `${TAG}s`;
const NET = process.pid % 250;
const HOST_IP = `10.213.${NET}.1`;
const ROUTER_HOST_SIDE = `10.213.${NET}.2`;
const ROUTER_REDIS_SIDE = `10.214.${NET}.1`;
const REDIS_IP = `10.214.${NET}.2`;
/** Long enough that TCP's retransmission timeout backs off several times. */
const CUT_MS = FULL ? 20_000 : 6500;
/** From the link's return to the first answered turn, at most. */
const RECOVERY_BUDGET_MS = 3000;

let redis: Subprocess | undefined;
let service: ServiceProcess | undefined;
let dir: string | undefined;

function sh(args: string[]): void {
  const result = Bun.spawnSync(args, { stdout: "ignore", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`${args.join(" ")} failed: ${result.stderr.toString()}`);
}

/**
 * The cut: the router drops both directions (blackhole routes). Drops must happen in transit: a
 * packet its own host cannot route is retried every 500 ms without backoff, which hides the problem.
 */
function cut(on: boolean): void {
  for (const ip of [REDIS_IP, HOST_IP]) sh(["ip", "-n", ROUTER_NS, "route", on ? "add" : "del", "blackhole", `${ip}/32`]);
}

/** service (root namespace) <-veth-> router namespace <-veth-> Redis namespace. */
function buildNetwork(): void {
  sh(["ip", "netns", "add", ROUTER_NS]);
  sh(["ip", "netns", "add", REDIS_NS]);
  sh(["ip", "link", "add", `${TAG}h`, "type", "veth", "peer", "name", `${TAG}a`, "netns", ROUTER_NS]);
  sh(["ip", "-n", ROUTER_NS, "link", "add", `${TAG}b`, "type", "veth", "peer", "name", `${TAG}s`, "netns", REDIS_NS]);
  sh(["ip", "addr", "add", `${HOST_IP}/30`, "dev", `${TAG}h`]);
  sh(["ip", "link", "set", `${TAG}h`, "up"]);
  sh(["ip", "route", "add", `${REDIS_IP}/32`, "via", ROUTER_HOST_SIDE]);
  sh(["ip", "-n", ROUTER_NS, "addr", "add", `${ROUTER_HOST_SIDE}/30`, "dev", `${TAG}a`]);
  sh(["ip", "-n", ROUTER_NS, "addr", "add", `${ROUTER_REDIS_SIDE}/30`, "dev", `${TAG}b`]);
  sh(["ip", "-n", ROUTER_NS, "link", "set", `${TAG}a`, "up"]);
  sh(["ip", "-n", ROUTER_NS, "link", "set", `${TAG}b`, "up"]);
  sh(["ip", "netns", "exec", ROUTER_NS, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
  sh(["ip", "-n", REDIS_NS, "addr", "add", `${REDIS_IP}/30`, "dev", `${TAG}s`]);
  sh(["ip", "-n", REDIS_NS, "link", "set", `${TAG}s`, "up"]);
  sh(["ip", "-n", REDIS_NS, "link", "set", "lo", "up"]);
  sh(["ip", "-n", REDIS_NS, "route", "add", "default", "via", ROUTER_REDIS_SIDE]);
}

beforeAll(async () => {
  requireRoot("network namespaces (ip netns)");
  requireBinary("ip", "apt-get install iproute2");
  const redisServer = requireBinary("redis-server");
  const redisCli = requireBinary("redis-cli", "apt-get install redis-tools");
  requireBinary("sysctl", "apt-get install procps");
  buildNetwork();
  dir = mkdtempSync(join(tmpdir(), "turnomatic-cut-"));
  redis = Bun.spawn(
    [
      "ip",
      "netns",
      "exec",
      REDIS_NS,
      redisServer,
      "--bind",
      REDIS_IP,
      "--port",
      "6379",
      "--dir",
      dir,
      "--save",
      "",
      "--protected-mode",
      "no",
    ],
    { stdout: "ignore", stderr: "ignore" },
  );
  await waitFor("redis-server in its namespace", async () => {
    const ping = Bun.spawnSync([redisCli, "-h", REDIS_IP, "-p", "6379", "PING"], { stdout: "pipe" });
    return ping.stdout.toString().trim() === "PONG";
  });
  service = await startService({ store: `redis://${REDIS_IP}:6379`, env: { TURNOMATIC_DEADLINE_MS: "1000" } });
}, 60_000);

afterAll(async () => {
  await service?.stop();
  redis?.kill("SIGKILL");
  await redis?.exited;
  Bun.spawnSync(["ip", "route", "del", `${REDIS_IP}/32`], { stderr: "ignore" });
  Bun.spawnSync(["ip", "link", "del", `${TAG}h`], { stderr: "ignore" });
  for (const ns of [REDIS_NS, ROUTER_NS]) Bun.spawnSync(["ip", "netns", "del", ns], { stderr: "ignore" });
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

test("after a cut link to Redis returns, turns are answered again within seconds; no duplicates", async () => {
  const url = (service as ServiceProcess).url;
  const ids = ["cut-hot", "cut-a", "cut-b", "cut-c"];
  const before = await readCounters(url, ids);
  const loadMs = 1500 + CUT_MS + 6000;
  const load = runTurnLoad({ url, ids, clients: 8, requests: 10_000_000, timeoutMs: 3000, maxDurationMs: loadMs });
  await Bun.sleep(1500);
  cut(true);
  await Bun.sleep(CUT_MS);
  cut(false);
  const healedAt = performance.now();
  const history = await load;

  const verdict = checkHistory(history, { before, after: await readCounters(url, ids), faults: true });
  const answeredAfterHeal = history.filter((e) => e.status === 200 && e.doneAt >= healedAt);
  const recoveryMs = Math.min(...answeredAfterHeal.map((e) => e.doneAt)) - healedAt;
  const lateFailures = history.filter((e) => e.status !== 200 && e.sentAt > healedAt + RECOVERY_BUDGET_MS);
  const failed = history.filter((e) => e.status !== 200);
  console.log(
    `redis link cut ${CUT_MS} ms: ${history.length} requests, ${failed.length} failed, first answer ${Math.round(recoveryMs)} ms after the link returned; ` +
      `gaps ${verdict.totals.gaps}, duplicates ${verdict.totals.duplicates}; reconnects: ${(service as ServiceProcess).logs().split("store.silent").length - 1}`,
  );
  expect(verdict.totals.duplicates).toBe(0);
  expect(verdict.ok, formatVerdict(verdict)).toBe(true);
  expect(failed.length).toBeGreaterThan(0); // the cut was real
  expect(recoveryMs).toBeLessThanOrEqual(RECOVERY_BUDGET_MS);
  expect(lateFailures).toEqual([]);
  expect((service as ServiceProcess).logs()).toContain('"event":"store.silent"');
}, 120_000);
