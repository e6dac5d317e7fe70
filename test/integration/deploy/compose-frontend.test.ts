/**
 * The compose HAProxy frontend publishes only the turn API (and /healthz), as the k8s Ingress routes
 * only /turno/: `/`, `/status.json`, `/readyz` and `/admin/*` are refused from outside, including the
 * spellings the app would resolve to them (dot segments, %2e, backslashes, absolute-form targets).
 * A real HAProxy runs deploy/compose/haproxy.cfg on loopback (only its server line, binds and log
 * target rewritten) in front of a real app with the admin API enabled; every refused path is also
 * sent to the app directly, to show that it does reach something there and HAProxy is what stops it.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";
import { requireBinary } from "../../../harness/binaries.ts";
import { freePort, waitFor } from "../../../harness/ports.ts";
import { ADMIN_TOKEN, type ServiceProcess, startService } from "../../../harness/service.ts";

const REPO = resolve(import.meta.dir, "../../..");
const CONFIG = join(REPO, "deploy/compose/haproxy.cfg");

let app: ServiceProcess;
let haproxy: Subprocess;
let lbPort = 0;
let directory = "";

function loopbackConfig(frontendPort: number, statsPort: number, appPort: number): string {
  let config = readFileSync(CONFIG, "utf8");
  const rewrites: [RegExp, string][] = [
    [/^ {2}server-template app \d+ app:7017$/m, `  server app1 127.0.0.1:${appPort}`],
    [/^ {2}bind :8080$/m, `  bind 127.0.0.1:${frontendPort}`],
    [/^ {2}bind :8404$/m, `  bind 127.0.0.1:${statsPort}`],
    [/^ {2}log stdout .*$/m, ""],
    [/^ {2}maxconn 20000$/m, "  maxconn 1000"],
  ];
  for (const [pattern, replacement] of rewrites) {
    if (!pattern.test(config)) throw new Error(`deploy/compose/haproxy.cfg no longer has a line matching ${pattern}`);
    config = config.replace(pattern, replacement);
  }
  return config;
}

/** One raw request (exact bytes of the target, no client-side normalization); status and content-type. */
function raw(port: number, method: string, target: string): Promise<{ status: number; type: string }> {
  return new Promise((done) => {
    let answer = "";
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(
        `${method} ${target} HTTP/1.1\r\nHost: turnos.example.com\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\ncontent-length: 0\r\nConnection: close\r\n\r\n`,
      );
    });
    socket.setTimeout(5000, () => socket.destroy());
    socket.on("data", (data) => {
      answer += data.toString("latin1");
    });
    socket.on("error", () => {});
    socket.on("close", () =>
      done({
        status: answer.startsWith("HTTP/1.1 ") ? Number(answer.slice(9, 12)) : 0,
        type: /\r\ncontent-type:\s*([^\r;]*)/i.exec(answer)?.[1] ?? "",
      }),
    );
  });
}

beforeAll(async () => {
  app = await startService({ store: "memory:", env: { TURNOMATIC_LOG_LEVEL: "error" } });
  const statsPort = await freePort();
  lbPort = await freePort();
  directory = mkdtempSync(join(tmpdir(), "turnomatic-compose-frontend-"));
  writeFileSync(join(directory, "haproxy.cfg"), loopbackConfig(lbPort, statsPort, app.port));
  const check = Bun.spawnSync([requireBinary("haproxy"), "-c", "-f", join(directory, "haproxy.cfg")], { stderr: "pipe" });
  if (check.exitCode !== 0) throw new Error(`haproxy -c refused the rewritten compose config: ${check.stderr}`);
  haproxy = Bun.spawn([requireBinary("haproxy"), "-db", "-f", join(directory, "haproxy.cfg")], {
    stdout: "ignore",
    stderr: "ignore",
  });
  await waitFor("app UP in HAProxy", async () => {
    const stats = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text();
    return /^turnomatic_app,app1,.*,UP,/m.test(stats);
  });
}, 60_000);

afterAll(async () => {
  haproxy?.kill("SIGKILL");
  await haproxy?.exited;
  await app?.stop("SIGKILL");
  if (directory !== "") rmSync(directory, { recursive: true, force: true });
});

describe("compose HAProxy frontend", () => {
  test("publishes the turn API and /healthz", async () => {
    expect(await raw(lbPort, "GET", "/turno/front")).toEqual({ status: 200, type: "application/json" });
    expect((await raw(lbPort, "POST", "/turno/front")).status).toBe(200);
    expect((await raw(lbPort, "GET", "/turno/front/actual")).status).toBe(200);
    expect((await raw(lbPort, "GET", "/turno/front?x=1")).status).toBe(200);
    expect((await raw(lbPort, "GET", "/healthz")).status).toBe(200);
    // An invalid id still reaches the app, which answers with its own problem document.
    expect(await raw(lbPort, "GET", "/turno/bad!id")).toEqual({ status: 400, type: "application/problem+json" });
  });

  const refused = [
    ["GET", "/"],
    ["GET", "/index.html"],
    ["GET", "/status.json"],
    ["GET", "/readyz"],
    ["PUT", "/admin/turno/front"],
    ["DELETE", "/admin/turno/front"],
    ["GET", "/admin/turno/front/ledger"],
    ["PUT", "/turno/../admin/turno/front"],
    ["PUT", "/turno/x/../../admin/turno/front"],
    ["PUT", "/turno/%2e%2e/admin/turno/front"],
    ["PUT", "/turno/%2E%2E/admin/turno/front"],
    ["PUT", "/turno\\..\\admin\\turno\\front"],
    ["PUT", "/turno/.%2e/admin/turno/front"],
    ["GET", "/turno/../status.json"],
    ["GET", "/turno/..\\status.json"],
    ["PUT", "http://turnos.example.com/admin/turno/front"],
    ["GET", "/healthz/../status.json"],
  ] as const;
  for (const [method, target] of refused) {
    test(`refuses ${method} ${target} from outside (HAProxy's 404)`, async () => {
      const direct = await raw(app.port, method, target);
      // The app does route it somewhere (admin API, readiness): not a 404 of its own. The status
      // page paths are refused by the app too (it serves them on the metrics port only): there
      // HAProxy's rule is defence in depth, and only its answer is checked.
      const statusPage = target === "/" || target.endsWith("index.html") || target.endsWith("status.json");
      if (!statusPage) {
        expect(direct.status).not.toBe(0);
        expect(direct.status).not.toBe(404);
      }
      const throughLb = await raw(lbPort, method, target);
      expect(throughLb.status).toBe(404);
      expect(throughLb.type).not.toContain("problem+json"); // HAProxy's answer, not the app's
    });
  }
});
