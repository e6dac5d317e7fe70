/**
 * Managed Redis as providers run it (issue 18), on real redis-server processes: TLS only, on a
 * private CA, `user default off` and an ACL user without @dangerous commands (no CONFIG, no INFO).
 * The service must work with the CA given through --redis-tls-ca, and otherwise name the cause in
 * /readyz, in the 503's detail and in one log line: untrusted certificate, hostname mismatch, wrong
 * password, a missing client certificate, a command the ACL denies, a server that never answers.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createServer, type Server } from "node:net";
import { createRedisStore } from "../../src/stores/redis-store.ts";
import { freePort, waitFor } from "../../harness/ports.ts";
import { type AclUser, aclArgs, type RedisProcess, type RedisStartOptions, startRedis } from "../../harness/redis-server.ts";
import { createTestPki, type TestPki } from "../../harness/redis-tls.ts";
import { type ServiceProcess, startService } from "../../harness/service.ts";

/** What a managed service gives you: `default` off, an app user with everything but @dangerous. */
const APP: AclUser = { user: "app", password: "app-pass", rules: ["+@all", "-@dangerous"] };
const MANAGED_ACL = aclArgs(APP);

let pki: TestPki;
const servers: RedisProcess[] = [];
const services: ServiceProcess[] = [];
beforeAll(() => {
  pki = createTestPki();
});
afterAll(async () => {
  for (const service of services) await service.stop("SIGKILL");
  for (const server of servers) await server.stop();
  pki.remove();
});

async function redis(options: RedisStartOptions): Promise<RedisProcess> {
  const server = await startRedis(options);
  servers.push(server);
  return server;
}

async function managedRedis(extra: Partial<RedisStartOptions> = {}): Promise<RedisProcess> {
  return redis({ tls: { pki }, args: MANAGED_ACL, cliUser: APP, ...extra });
}

function withUser(url: string, user: string, password: string): string {
  return url.replace("rediss://", `rediss://${user}:${password}@`);
}

async function service(store: string, args: string[] = []): Promise<ServiceProcess> {
  const started = await startService({ store, args: ["--deadline-ms", "500", ...args] });
  services.push(started);
  return started;
}

async function readyz(s: ServiceProcess): Promise<{ status: number; body: { status: string; detail?: string } }> {
  const response = await fetch(`${s.url}/readyz`);
  return { status: response.status, body: (await response.json()) as { status: string; detail?: string } };
}

async function turn(s: ServiceProcess): Promise<{ status: number; body: { turno?: number; detail?: string } }> {
  const response = await fetch(`${s.url}/turno/tls-${Math.random().toString(36).slice(2, 8)}`, { method: "POST" });
  return { status: response.status, body: (await response.json()) as { turno?: number; detail?: string } };
}

async function gauge(s: ServiceProcess): Promise<string | undefined> {
  const text = await (await fetch(`http://127.0.0.1:${s.metricsPort}/metrics`)).text();
  return /turnomatic_store_durability_warning\{store="[^"]+"\} (\d)/.exec(text)?.[1];
}

/** The JSON log lines with this event. */
function events(s: ServiceProcess, event: string): Array<Record<string, unknown>> {
  return s
    .logs()
    .split("\n")
    .filter((line) => line.includes(`"event":"${event}"`))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Asserts that an operator-facing detail is in the service's words. */
function expectOwnWords(detail: string | undefined): void {
  expect(detail).toBeDefined();
  expect(detail).not.toContain("maxRetriesPerRequest");
  expect(detail).not.toContain("max retries");
  expect(detail).not.toContain("..");
  expect(detail).not.toContain("Unexpected error");
}

/** A store that is down: /readyz, a turn and the log all name `cause`; the error is logged once. */
async function expectCauseEverywhere(s: ServiceProcess, cause: string): Promise<void> {
  const ready = await readyz(s);
  expect(ready.status).toBe(503);
  expect(ready.body.detail).toContain(cause);
  expectOwnWords(ready.body.detail);
  const answer = await turn(s);
  expect(answer.status).toBe(503);
  expect(answer.body.detail).toContain(cause);
  expectOwnWords(answer.body.detail);
  // ioredis retries every <= 1 s; the cause is logged once, not per retry.
  await Bun.sleep(1500);
  const errors = events(s, "store.error").filter((line) => String(line.error).includes(cause));
  expect(errors).toHaveLength(1);
  expect(String(errors[0]?.msg)).toContain(cause);
  expect(events(s, "store.unavailable")).toHaveLength(1);
  // Unreachable is not "settings unreadable": no persistence warning at all.
  expect(events(s, "store.durability")).toHaveLength(0);
  expect(await gauge(s)).toBe("2");
}

describe("managed Redis: TLS on a private CA, an ACL user without @dangerous", () => {
  test("works with --redis-tls-ca; the start warning says CONFIG and INFO cannot be read with this user; gauge 2", async () => {
    const server = await managedRedis();
    const s = await service(withUser(server.url, "app", "app-pass"), ["--redis-tls-ca", pki.ca]);
    expect((await readyz(s)).status).toBe(200);
    const first = await turn(s);
    expect(first).toMatchObject({ status: 200, body: { turno: 1 } });
    const [warning] = events(s, "store.durability");
    expect(String(warning?.msg)).toContain("cannot be verified with this Redis user");
    expect(String(warning?.msg)).toContain("CONFIG GET and INFO are refused for this user (NOPERM)");
    expect(String(warning?.msg)).toContain("provider's console");
    expect(s.logs()).not.toContain("max retries");
    expect(await gauge(s)).toBe("2");
    // The same through the environment variable.
    const byEnv = await startService({
      store: withUser(server.url, "app", "app-pass"),
      env: { TURNOMATIC_REDIS_TLS_CA: pki.ca },
    });
    services.push(byEnv);
    expect((await readyz(byEnv)).status).toBe(200);
  });

  test("CA left out: 'not trusted' and the option to set, in /readyz, the 503 and one log line", async () => {
    const server = await managedRedis();
    const s = await service(withUser(server.url, "app", "app-pass"));
    await expectCauseEverywhere(s, "TLS certificate is not trusted");
    expect((await readyz(s)).body.detail).toContain("--redis-tls-ca");
  });

  test("a CA that did not sign the server's certificate: not trusted", async () => {
    const server = await managedRedis();
    const s = await service(withUser(server.url, "app", "app-pass"), ["--redis-tls-ca", pki.otherCa]);
    await expectCauseEverywhere(s, "TLS certificate is not trusted");
  });

  test("wrong password: WRONGPASS, named as such", async () => {
    const server = await managedRedis();
    const s = await service(withUser(server.url, "app", "wrong"), ["--redis-tls-ca", pki.ca]);
    await expectCauseEverywhere(s, "refused the user name or password");
  });

  test("no user at all against `user default off`: authentication required", async () => {
    const server = await managedRedis();
    const s = await service(server.url, ["--redis-tls-ca", pki.ca]);
    const ready = await readyz(s);
    expect(ready.status).toBe(503);
    expect(ready.body.detail).toMatch(/NOAUTH|WRONGPASS/);
    expectOwnWords(ready.body.detail);
  });

  test("hostname mismatch: the certificate names another host", async () => {
    const server = await managedRedis({ tls: { pki, serverCert: pki.wrongHost } });
    const s = await service(withUser(server.url, "app", "app-pass"), ["--redis-tls-ca", pki.ca]);
    await expectCauseEverywhere(s, "does not name the host");
  });

  test("mutual TLS: refused without a client certificate, served with --redis-tls-cert/--redis-tls-key", async () => {
    const server = await managedRedis({ tls: { pki, authClients: "yes" } });
    const url = withUser(server.url, "app", "app-pass");
    const without = createRedisStore({ url, keyPrefix: "m:", commandTimeoutMs: 500, tls: { caFile: pki.ca } });
    try {
      const check = await without.checkAtStart(2000);
      expect(check.state).toBe("unreachable");
      if (check.state === "unreachable") expect(check.cause).toMatch(/client certificate/);
      expectOwnWords(check.state === "unreachable" ? check.cause : undefined);
    } finally {
      await without.close();
    }
    const s = await service(url, [
      "--redis-tls-ca",
      pki.ca,
      "--redis-tls-cert",
      pki.client.cert,
      "--redis-tls-key",
      pki.client.key,
    ]);
    expect((await readyz(s)).status).toBe(200);
    expect((await turn(s)).status).toBe(200);
  });

  test("an ACL that denies a command the service needs: the 503 names the command", async () => {
    const server = await redis({
      tls: { pki },
      args: aclArgs({ ...APP, rules: [...APP.rules, "-evalsha", "-eval"] }),
      cliUser: APP,
    });
    const s = await service(withUser(server.url, "app", "app-pass"), ["--redis-tls-ca", pki.ca]);
    // The store marker is read with EVAL at start (store-guard.ts), so readiness fails too, naming it.
    const ready = await readyz(s);
    expect(ready.status).toBe(503);
    expect(ready.body.detail).toMatch(/may not run a command the service needs: EVAL(SHA)? \(NOPERM\)/);
    const answer = await turn(s);
    expect(answer.status).toBe(503);
    expect(answer.body.detail).toMatch(/may not run a command the service needs: EVAL(SHA)? \(NOPERM\)/);
    expectOwnWords(answer.body.detail);
  });

  test("a server that accepts TCP but never completes the TLS handshake: timed out", async () => {
    const silent: Server = createServer(() => {});
    const port = await freePort();
    await new Promise<void>((resolve) => silent.listen(port, "127.0.0.1", resolve));
    try {
      const s = await service(`rediss://app:app-pass@127.0.0.1:${port}`, ["--redis-tls-ca", pki.ca]);
      await waitFor("the timeout named in /readyz", async () => (await readyz(s)).body.detail?.includes("timed out") === true);
      expectOwnWords((await readyz(s)).body.detail);
      expect(events(s, "store.unavailable")).toHaveLength(1);
      expect(events(s, "store.durability")).toHaveLength(0);
      await s.stop("SIGKILL");
    } finally {
      silent.close();
    }
  });
});

describe("Redis unreachable at start", () => {
  test("says so, serves 503 with the cause, then logs when it connects and runs the checks", async () => {
    const port = await freePort();
    const s = await service(`redis://127.0.0.1:${port}`);
    await expectCauseEverywhere(s, "Redis refused the connection at 127.0.0.1");
    expect(String(events(s, "store.unavailable")[0]?.msg)).toContain("Serving 503 on turns and on /readyz until it connects");
    // Redis comes up on that port: the service connects by itself and checks the settings then.
    const server = await startRedis({ port, args: ["--appendonly", "yes", "--appendfsync", "always"] });
    servers.push(server);
    await waitFor("/readyz 200 once Redis is up", async () => (await readyz(s)).status === 200, 10_000, 100);
    expect((await turn(s)).status).toBe(200);
    await waitFor("store.connected logged", () => events(s, "store.connected").length === 1);
    expect(events(s, "store.ready").length).toBeGreaterThanOrEqual(1);
    await waitFor("gauge 0 after the deferred check", async () => (await gauge(s)) === "0");
  });
});

describe("TLS options are checked at start", () => {
  const run = async (args: string[], env: Record<string, string> = {}) => {
    const child = Bun.spawn([process.execPath, `${import.meta.dir}/../../src/main.ts`, ...args], {
      env: { ...process.env, TURNOMATIC_STORE: "rediss://127.0.0.1:1", METRICS_PORT: "0", ...env },
      stdout: "ignore",
      stderr: "pipe",
    });
    const stderr = await new Response(child.stderr).text();
    return { code: await child.exited, stderr };
  };

  test("an unreadable CA file stops the start with exit 2, naming the option", async () => {
    const flag = await run(["--redis-tls-ca", "/nonexistent/ca.pem"]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("--redis-tls-ca");
    expect(flag.stderr).toContain("/nonexistent/ca.pem");
    const env = await run([], { TURNOMATIC_REDIS_TLS_KEY: "/nonexistent/key.pem", TURNOMATIC_REDIS_TLS_CERT: pki.client.cert });
    expect(env.code).toBe(2);
    expect(env.stderr).toContain("TURNOMATIC_REDIS_TLS_KEY");
  });

  test("a file that is not PEM, a certificate without its key, TLS files with redis://: exit 2", async () => {
    expect((await run(["--redis-tls-ca", import.meta.path])).stderr).toContain("not a PEM file");
    const alone = await run(["--redis-tls-cert", pki.client.cert]);
    expect(alone.code).toBe(2);
    expect(alone.stderr).toContain("--redis-tls-key");
    const plain = await run(["--redis-tls-ca", pki.ca], { TURNOMATIC_STORE: "redis://127.0.0.1:1" });
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain("rediss://");
  });
});
