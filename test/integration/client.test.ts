/**
 * @turnomatic/client against the real service (its own process on free ports):
 * - a response lost after the server answered (a fault proxy between client and service drops it):
 *   the retry carries the same Idempotency-Key and gets the SAME number; the next call the next one,
 *   so the caller sees 1..N. Control: the same loss followed by a retry with a fresh key skips one.
 * - a real 503 with Retry-After (Redis behind a blackholed proxy, --deadline-ms 300): the retry waits
 *   the Retry-After; after the heal the caller gets the number its first attempt took in the store.
 * - Redis stays away: the client gives up after retry.attempts with an UnavailableError carrying the
 *   last cause and the key.
 * - a call that gave up after the server took its number: a later `next(id, { key })` resumes it and
 *   gets that number: no gap.
 * - a typed 409 at exhaustion, at once (no retry).
 * - batch(id, k): a lost answer retried with the same key gets the same range; a key reused with
 *   another count (422), a count over the maximum (400) and a batch at exhaustion (409, nothing
 *   taken) are typed.
 * - the built package (tsc to JavaScript) runs on Node, so the client uses no Bun API.
 */
import { afterEach, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CounterExhaustedError,
  InvalidRequestError,
  type RetryEvent,
  TurnomaticClient,
  UnavailableError,
} from "../../client/index.ts";
import { requireBinary } from "../../harness/binaries.ts";
import { type FaultProxy, startFaultProxy } from "../../harness/fault-proxy.ts";
import { type RedisProcess, startRedis } from "../../harness/redis-server.ts";
import { adminHeaders, type ServiceProcess, startService } from "../../harness/service.ts";

const ROOT = join(import.meta.dir, "../..");
const STORE_503: readonly string[] = ["TURNO_ERR_STORE_TIMEOUT", "TURNO_ERR_STORE_UNAVAILABLE"];
let cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  cleanups = [];
});

async function service(options: Parameters<typeof startService>[0] = {}): Promise<ServiceProcess> {
  const started = await startService(options);
  cleanups.push(() => started.stop("SIGKILL"));
  return started;
}

async function proxyTo(port: number): Promise<FaultProxy> {
  const proxy = await startFaultProxy("127.0.0.1", port);
  cleanups.push(() => proxy.close());
  return proxy;
}

async function actual(url: string, id: string): Promise<number> {
  return ((await (await fetch(`${url}/turno/${id}/actual`)).json()) as { turno: number }).turno;
}

/** Redis behind a fault proxy, the service on it with a short store deadline. */
async function serviceOnProxiedRedis(): Promise<{ svc: ServiceProcess; redisProxy: FaultProxy }> {
  const redis: RedisProcess = await startRedis();
  cleanups.push(() => redis.stop());
  const redisProxy = await proxyTo(redis.port);
  const svc = await service({ store: redisProxy.url, env: { TURNOMATIC_DEADLINE_MS: "300" } });
  return { svc, redisProxy };
}

test("a response lost after the server answered: the retry gets the same number, the caller sees 1..N", async () => {
  const svc = await service();
  const proxy = await proxyTo(svc.port);
  const events: RetryEvent[] = [];
  const client = new TurnomaticClient({ baseUrl: `http://127.0.0.1:${proxy.port}`, onRetry: (e) => events.push(e) });
  const got: number[] = [];
  for (let i = 0; i < 6; i++) {
    if (i % 2 === 0) proxy.dropResponses(1);
    const turn = await client.next("lost");
    got.push(turn.turno);
    expect(turn.attempts).toBe(i % 2 === 0 ? 2 : 1);
  }
  expect(proxy.dropped).toBe(3);
  expect(events.map((e) => e.error.code)).toEqual(Array(3).fill("TURNO_CLIENT_ERR_CONNECTION"));
  expect(got).toEqual([1, 2, 3, 4, 5, 6]);
  expect(await actual(svc.url, "lost")).toBe(6);

  // Control: without the same key, the same loss costs a number (the retry is a new request).
  proxy.dropResponses(1);
  const lostCall = await fetch(`http://127.0.0.1:${proxy.port}/turno/control`, {
    method: "POST",
    headers: { "idempotency-key": "k-1" },
  }).catch(() => undefined);
  expect(lostCall).toBeUndefined();
  const fresh = await client.next("control");
  expect(fresh.turno).toBe(2);
  expect((await client.next("control", { key: "k-1" })).turno).toBe(1);
});

test("503 with Retry-After from the real service: the retry waits for it; after the heal the first attempt's number comes back", async () => {
  const { svc, redisProxy } = await serviceOnProxiedRedis();
  const answers: number[] = [];
  const sends: number[] = [];
  const events: RetryEvent[] = [];
  const client = new TurnomaticClient({
    baseUrl: svc.url,
    fetch: async (input, init) => {
      sends.push(performance.now());
      const response = await fetch(input, init);
      answers.push(performance.now());
      return response;
    },
    onRetry: (event) => {
      events.push(event);
      redisProxy.heal();
    },
  });
  await client.next("warm"); // the store connection is up and the marker read
  sends.length = 0;
  answers.length = 0;
  redisProxy.blackhole();
  const turn = await client.next("ra");
  // The store deadline passed: the service's bounded 503 (TIMEOUT or UNAVAILABLE, as the Redis store words it), Retry-After 1.
  expect(events.map((e) => [e.error.status, STORE_503.includes(e.error.code), e.error.retryAfterMs])).toEqual([
    [503, true, 1000],
  ]);
  expect(sends.length).toBe(2);
  expect((sends[1] as number) - (answers[0] as number)).toBeGreaterThanOrEqual(1000);
  // The first attempt's reservation reached Redis after the heal and recorded the key: one number, not two.
  expect(turn).toMatchObject({ turno: 1, attempts: 2 });
  expect(await actual(svc.url, "ra")).toBe(1);
  expect((await client.next("ra")).turno).toBe(2);
});

test("the store stays away: UnavailableError after retry.attempts, with the last cause and the key", async () => {
  const { svc, redisProxy } = await serviceOnProxiedRedis();
  const client = new TurnomaticClient({ baseUrl: svc.url, retry: { attempts: 2 } });
  await client.next("warm");
  redisProxy.blackhole();
  const started = performance.now();
  const error = (await client.next("gone").catch((e: unknown) => e)) as UnavailableError;
  const tookMs = performance.now() - started;
  expect(error).toBeInstanceOf(UnavailableError);
  expect(error.attempts).toBe(2);
  expect(STORE_503).toContain(error.cause.code);
  expect(error.status).toBe(503);
  expect(typeof error.key).toBe("string");
  expect(tookMs).toBeGreaterThanOrEqual(1000); // two 300 ms deadlines and one Retry-After of 1 s
  expect(tookMs).toBeLessThan(5000);
  redisProxy.heal();
  const resumed = await client.next("gone", { key: error.key as string });
  expect((await client.next("gone")).turno).toBe(resumed.turno + 1);
});

test("a call that gave up after its number was taken resumes with its key: the same number, no gap", async () => {
  const svc = await service();
  const proxy = await proxyTo(svc.port);
  const client = new TurnomaticClient({ baseUrl: `http://127.0.0.1:${proxy.port}`, retry: { attempts: 1 } });
  proxy.dropResponses(1);
  const error = (await client.next("resume").catch((e: unknown) => e)) as UnavailableError;
  expect(error).toBeInstanceOf(UnavailableError);
  expect(error.cause.code).toBe("TURNO_CLIENT_ERR_CONNECTION");
  expect(await actual(svc.url, "resume")).toBe(1); // the number was issued; the caller did not get it
  const resumed = await client.next("resume", { key: error.key as string });
  expect(resumed.turno).toBe(1);
  expect((await client.next("resume")).turno).toBe(2);
});

test("a typed 409 at exhaustion, without retries", async () => {
  const svc = await service();
  const put = await fetch(`${svc.url}/admin/turno/full`, {
    method: "PUT",
    headers: adminHeaders(),
    body: JSON.stringify({ turno: Number.MAX_SAFE_INTEGER - 1 }),
  });
  expect(put.status).toBe(200);
  const events: RetryEvent[] = [];
  const client = new TurnomaticClient({ baseUrl: svc.url, onRetry: (e) => events.push(e) });
  expect((await client.next("full")).turno).toBe(Number.MAX_SAFE_INTEGER);
  const error = (await client.next("full").catch((e: unknown) => e)) as CounterExhaustedError;
  expect(error).toBeInstanceOf(CounterExhaustedError);
  expect(error).toMatchObject({ code: "TURNO_ERR_COUNTER_EXHAUSTED", status: 409 });
  expect(events).toEqual([]);
  expect(await actual(svc.url, "full")).toBe(Number.MAX_SAFE_INTEGER);
});

test("batch against the real service: a lost answer is retried with the same key and gets the same range; exhaustion and a bad count are typed", async () => {
  const svc = await service();
  const proxy = await proxyTo(svc.port);
  const client = new TurnomaticClient({ baseUrl: `http://127.0.0.1:${proxy.port}` });
  expect((await client.next("bulk")).turno).toBe(1);
  proxy.dropResponses(1);
  const range = await client.batch("bulk", 10);
  expect(range).toMatchObject({ first: 2, last: 11, attempts: 2 });
  expect(proxy.dropped).toBe(1);
  expect((await client.next("bulk")).turno).toBe(12);
  // The same key for another count is another call: 422, nothing taken.
  const reused = (await client.batch("bulk", 5, { key: range.key }).catch((e: unknown) => e)) as InvalidRequestError;
  expect(reused).toBeInstanceOf(InvalidRequestError);
  expect(reused).toMatchObject({ code: "TURNO_ERR_IDEMPOTENCY_KEY_REUSED", status: 422 });
  const tooMany = (await client.batch("bulk", 1001).catch((e: unknown) => e)) as InvalidRequestError;
  expect(tooMany).toBeInstanceOf(InvalidRequestError);
  expect(tooMany).toMatchObject({ code: "TURNO_ERR_INVALID_COUNT", status: 400 });
  expect(await actual(svc.url, "bulk")).toBe(12);

  const put = await fetch(`${svc.url}/admin/turno/edge`, {
    method: "PUT",
    headers: adminHeaders(),
    body: JSON.stringify({ turno: Number.MAX_SAFE_INTEGER - 3 }),
  });
  expect(put.status).toBe(200);
  const exhausted = await client.batch("edge", 4).catch((e: unknown) => e);
  expect(exhausted).toBeInstanceOf(CounterExhaustedError);
  expect(await actual(svc.url, "edge")).toBe(Number.MAX_SAFE_INTEGER - 3); // all or nothing
  expect(await client.batch("edge", 3)).toMatchObject({ first: Number.MAX_SAFE_INTEGER - 2, last: Number.MAX_SAFE_INTEGER });
});

test("the package built to JavaScript runs on Node (no Bun API in the client)", async () => {
  const node = requireBinary("node", "install Node.js 20 or later");
  const svc = await service();
  const out = mkdtempSync(join(tmpdir(), "turnomatic-client-build-"));
  cleanups.push(() => rmSync(out, { recursive: true, force: true }));
  const tsc = Bun.spawnSync([join(ROOT, "node_modules/.bin/tsc"), "-p", join(ROOT, "client"), "--outDir", out], {
    stderr: "pipe",
    stdout: "pipe",
  });
  expect(tsc.exitCode, `${tsc.stdout}${tsc.stderr}`).toBe(0);
  await Bun.write(join(out, "package.json"), JSON.stringify({ type: "module" }));
  const script = `import { TurnomaticClient } from ${JSON.stringify(join(out, "index.js"))};
const client = new TurnomaticClient({ baseUrl: ${JSON.stringify(svc.url)} });
const a = await client.next("node"); const b = await client.next("node"); const c = await client.actual("node");
console.log(JSON.stringify([a.turno, b.turno, c.turno, process.versions.node]));`;
  const run = Bun.spawnSync([node, "--input-type=module", "-e", script], { stderr: "pipe", stdout: "pipe" });
  expect(run.exitCode, String(run.stderr)).toBe(0);
  const [a, b, c, version] = JSON.parse(String(run.stdout)) as [number, number, number, string];
  expect([a, b, c]).toEqual([1, 2, 2]);
  expect(Number(version.split(".")[0])).toBeGreaterThanOrEqual(20);
});
