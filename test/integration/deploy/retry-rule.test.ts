/**
 * What happens to a turn whose response is lost, shown with real HAProxy and a real service: one of
 * two servers sits behind a fault proxy that lets turn requests reach the app and then drops the
 * connection instead of passing the response back (as a crashing host would). The app has issued a
 * number that nobody receives. The history checker judges each case:
 * - deploy/compose/haproxy.cfg as it is (`retry-on conn-failure`), a client that opens a connection
 *   per request: the client gets a 502; the lost number is a counted failure, which I2 allows.
 * - Negative control, an L7 retry added (`retry-on conn-failure empty-response`): HAProxy re-sends
 *   the GET to the other server, the client gets the *next* number, the lost one is a silent gap.
 * - A keep-alive client: when the server side dies on a request that is not the first of the client's
 *   connection, HAProxy closes the client connection without an answer (documented HAProxy behaviour:
 *   the client may replay, as if it had talked to the server directly), and HTTP clients replay it
 *   (Bun's fetch does for GET, as do curl and browsers): again a silent gap, caused by the client.
 * - The same client with POST: Bun's fetch does not replay a non-idempotent method (RFC 9110
 *   section 9.2.2), so each lost response is a counted failure.
 * - The same keep-alive client with an Idempotency-Key: the replay carries the key and gets the
 *   number the first attempt was given; no gap, no failure. This is what docs/guides/operations.md asks of
 *   clients.
 * - Keep-alive on both sides (the default since HAProxy pools server connections, `http-reuse safe`):
 *   the proxy passes the first response of each server connection and drops later ones, so every
 *   lost response is on a connection HAProxy *reused*. A keep-alive client that never resends gets
 *   no answer for each (a counted failure) and no silent gap: HAProxy resent nothing. The negative
 *   control (an L7 retry) shows the same setup catches a resend.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { requireBinary } from "../../../harness/binaries.ts";
import { checkHistory, type HistoryEntry } from "../../../harness/history-checker.ts";
import { freePort, waitFor } from "../../../harness/ports.ts";
import { type ServiceProcess, startService } from "../../../harness/service.ts";
import { RawKeepAliveConnection } from "../../../harness/raw-keepalive-client.ts";
import { readCounters, requestTurn } from "../../../harness/turn-load.ts";

const REPO = resolve(import.meta.dir, "../../..");
const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/**
 * A TCP proxy that passes everything except the responses to turn requests: those it drops, from the
 * `dropFrom`-th request of each connection on (1: all of them; 2: only on reused connections).
 */
async function startResponseDroppingProxy(
  targetPort: number,
  dropFrom = 1,
): Promise<{ port: number; dropped: () => number; droppedOnReused: () => number }> {
  let dropped = 0;
  let droppedOnReused = 0;
  const server: Server = createServer((client) => {
    const upstream = connect(targetPort, "127.0.0.1");
    let requests = 0;
    let isTurn = false;
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("data", (chunk) => {
      const text = chunk.toString("latin1");
      if (/^[A-Z]+ \//.test(text)) {
        requests++;
        isTurn = /^(GET|POST) \/turno\/[^/ ]+ /.test(text);
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!isTurn || requests < dropFrom) return void client.write(chunk);
      // The app has answered, so it issued a number; nobody will receive it.
      dropped++;
      if (requests >= 2) droppedOnReused++;
      closeBoth();
    });
    upstream.on("end", () => client.end());
    client.on("end", () => upstream.end());
    client.on("error", closeBoth);
    upstream.on("error", closeBoth);
  });
  const port = await freePort();
  await new Promise<void>((done) => server.listen(port, "127.0.0.1", done));
  cleanups.push(() => new Promise((done) => server.close(done)));
  return { port, dropped: () => dropped, droppedOnReused: () => droppedOnReused };
}

/** The compose config with two loopback servers: s1 behind the fault proxy, s2 direct. */
function configFor(frontendPort: number, statsPort: number, proxyPort: number, appPort: number, retryOn: string): string {
  let config = readFileSync(join(REPO, "deploy/compose/haproxy.cfg"), "utf8");
  const rewrites: [RegExp, string][] = [
    [/^ {2}server-template app \d+ app:7017$/m, `  server s1 127.0.0.1:${proxyPort}\n  server s2 127.0.0.1:${appPort}`],
    [/^ {2}bind :8080$/m, `  bind 127.0.0.1:${frontendPort}`],
    [/^ {2}bind :8404$/m, `  bind 127.0.0.1:${statsPort}`],
    [/^ {2}log stdout .*$/m, ""],
    [/^ {2}maxconn 20000$/m, "  maxconn 4000"],
    [/^ {2}retry-on conn-failure$/m, `  retry-on ${retryOn}`],
    // Round robin, so turn requests alternate between s1 and s2 deterministically.
    [/^ {2}balance leastconn$/m, "  balance roundrobin"],
  ];
  for (const [pattern, replacement] of rewrites) {
    if (!pattern.test(config)) throw new Error(`deploy/compose/haproxy.cfg no longer has a line matching ${pattern}`);
    config = config.replace(pattern, replacement);
  }
  return config;
}

interface ClientStyle {
  /**
   * "close": one connection per request; "keep-alive": fetch's pool (replays on a dead reused
   * connection); "raw-keep-alive": one keep-alive connection that never resends.
   */
  readonly connection: "close" | "keep-alive" | "raw-keep-alive";
  /** The proxy drops turn responses from this request of each server connection on. Default 1. */
  readonly dropFrom?: number;
  readonly idempotencyKeys: boolean;
  readonly method: "GET" | "POST";
}

async function runThroughHaproxy(retryOn: string, client: ClientStyle) {
  const service: ServiceProcess = await startService({ store: "memory:", env: { TURNOMATIC_LOG_LEVEL: "error" } });
  cleanups.push(() => service.stop("SIGKILL"));
  const proxy = await startResponseDroppingProxy(service.port, client.dropFrom ?? 1);
  const [frontendPort, statsPort] = [await freePort(), await freePort()];
  const directory = mkdtempSync(join(tmpdir(), "turnomatic-retry-"));
  cleanups.push(() => rmSync(directory, { recursive: true, force: true }));
  const path = join(directory, "haproxy.cfg");
  writeFileSync(path, configFor(frontendPort, statsPort, proxy.port, service.port, retryOn));
  const haproxy = Bun.spawn([requireBinary("haproxy"), "-db", "-f", path], { stdout: "ignore", stderr: "ignore" });
  cleanups.push(() => haproxy.kill("SIGKILL"));
  await waitFor("both servers up in HAProxy", async () => {
    const stats = await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text();
    return stats.split("\n").filter((line) => /^turnomatic_app,s\d,.*,UP,/.test(line)).length === 2;
  });
  const url = `http://127.0.0.1:${frontendPort}`;
  const history: HistoryEntry[] = [];
  const raw = client.connection === "raw-keep-alive" ? new RawKeepAliveConnection(url) : undefined;
  cleanups.push(() => raw?.close());
  // Sequential and bounded: enough requests for several to land on s1.
  for (let i = 0; i < 24 && proxy.dropped() < 3; i++) {
    const headers: Record<string, string> = {};
    if (client.connection === "close") headers.Connection = "close";
    if (client.idempotencyKeys) headers["Idempotency-Key"] = `request-${i}`;
    history.push(raw === undefined ? await requestTurn(url, "retry", 5000, client.method, headers) : await rawTurn(raw, "retry"));
  }
  const after = await readCounters(`http://127.0.0.1:${service.port}`, ["retry"]);
  return {
    history,
    dropped: proxy.dropped(),
    droppedOnReused: proxy.droppedOnReused(),
    verdict: checkHistory(history, { after, faults: true }),
  };
}

async function rawTurn(connection: RawKeepAliveConnection, id: string): Promise<HistoryEntry> {
  const sentAt = performance.now();
  const answer = await connection.request(`/turno/${id}`, 5000);
  const doneAt = performance.now();
  if (answer === undefined || answer.status !== 200) return { id, sentAt, doneAt, status: answer?.status ?? 0 };
  return { id, sentAt, doneAt, status: 200, turno: (JSON.parse(answer.body) as { turno: number }).turno };
}

const FRESH: ClientStyle = { connection: "close", idempotencyKeys: false, method: "GET" };
const KEEP_ALIVE: ClientStyle = { connection: "keep-alive", idempotencyKeys: false, method: "GET" };

describe("lost responses behind HAProxy and I2", () => {
  test("the compose HAProxy rules turn a lost response into a counted failure (502), never a silent gap", async () => {
    const { history, dropped, verdict } = await runThroughHaproxy("conn-failure", FRESH);
    const failed = history.filter((entry) => entry.status !== 200);
    expect(dropped).toBeGreaterThanOrEqual(1);
    expect(failed.map((entry) => entry.status)).toEqual(Array(dropped).fill(502));
    expect(verdict.totals.gaps).toBe(dropped);
    expect(verdict.ok).toBe(true);
  }, 60_000);

  test("negative control: an L7 retry (empty-response) re-sends the GET and the lost number becomes a silent gap", async () => {
    const { history, dropped, verdict } = await runThroughHaproxy("conn-failure empty-response", FRESH);
    expect(dropped).toBeGreaterThanOrEqual(1);
    expect(history.filter((entry) => entry.status !== 200).length).toBeLessThan(dropped);
    expect(verdict.totals.gaps).toBeGreaterThan(verdict.totals.failed);
    expect(verdict.ok).toBe(false);
  }, 60_000);

  test("a keep-alive client replays a request HAProxy closed silently: a silent gap, caused by the client", async () => {
    const { history, dropped, verdict } = await runThroughHaproxy("conn-failure", KEEP_ALIVE);
    expect(dropped).toBeGreaterThanOrEqual(2);
    expect(history.filter((entry) => entry.status !== 200).length).toBeLessThan(dropped);
    expect(verdict.totals.gaps).toBeGreaterThan(verdict.totals.failed);
    expect(verdict.totals.duplicates).toBe(0);
  }, 60_000);

  test("the same keep-alive client does not replay a POST: every lost response is a counted failure", async () => {
    const { history, dropped, verdict } = await runThroughHaproxy("conn-failure", { ...KEEP_ALIVE, method: "POST" });
    expect(dropped).toBeGreaterThanOrEqual(2);
    expect(history.filter((entry) => entry.status !== 200).length).toBe(dropped);
    expect({ ok: verdict.ok, gaps: verdict.totals.gaps }).toEqual({ ok: true, gaps: dropped });
  }, 60_000);

  test("with an Idempotency-Key the client's replay gets the same number: every gap is a counted failure", async () => {
    const client: ClientStyle = { connection: "keep-alive", idempotencyKeys: true, method: "GET" };
    const { history, dropped, verdict } = await runThroughHaproxy("conn-failure", client);
    const failed = history.filter((entry) => entry.status !== 200).length;
    expect(dropped).toBeGreaterThanOrEqual(2);
    // Only the first request of the connection gets HAProxy's 502 (a fresh connection is not replayed);
    // every later lost response was replayed by the client and answered from the idempotency record.
    expect(failed).toBeLessThan(dropped);
    expect({ ok: verdict.ok, gaps: verdict.totals.gaps, duplicates: verdict.totals.duplicates }).toEqual({
      ok: true,
      gaps: failed,
      duplicates: 0,
    });
  }, 60_000);

  const REUSED: ClientStyle = { connection: "raw-keep-alive", idempotencyKeys: false, method: "GET", dropFrom: 2 };

  test("keep-alive on both sides, responses lost on reused server connections: counted failures, nothing resent", async () => {
    const { history, dropped, droppedOnReused, verdict } = await runThroughHaproxy("conn-failure", REUSED);
    console.log(
      `retry-rule (reused connections): ${dropped} responses dropped, ${droppedOnReused} on reused server connections; statuses ${history.map((e) => e.status).join(",")}`,
    );
    expect(droppedOnReused).toBeGreaterThanOrEqual(1); // HAProxy did reuse server connections, and lost those
    expect(droppedOnReused).toBe(dropped);
    const failed = history.filter((entry) => entry.status !== 200);
    expect(failed.length).toBe(dropped);
    expect({ ok: verdict.ok, gaps: verdict.totals.gaps, duplicates: verdict.totals.duplicates }).toEqual({
      ok: true,
      gaps: dropped,
      duplicates: 0,
    });
  }, 60_000);

  test("negative control: with an L7 retry, a response lost on a reused server connection is resent (a silent gap)", async () => {
    const { dropped, droppedOnReused, verdict, history } = await runThroughHaproxy("conn-failure empty-response", REUSED);
    expect(droppedOnReused).toBeGreaterThanOrEqual(1);
    expect(history.filter((entry) => entry.status !== 200).length).toBeLessThan(dropped);
    expect(verdict.totals.gaps).toBeGreaterThan(verdict.totals.failed);
    expect(verdict.ok).toBe(false);
  }, 60_000);
});
