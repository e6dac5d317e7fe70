/**
 * The store-side ledger accounts for every number behind the production (keep-alive) load balancer.
 *
 * Contract under test (docs/reports/postmortems/2026-11-27-silent-gaps-behind-haproxy.md): per id the store
 * keeps `issued` (the counter), `delivered` (numbers whose response an app handed to a live client
 * connection) and `lost = issued - delivered`, read with `GET /admin/turno/:id/ledger` (admin token)
 * -> {"id","issued","delivered","lost"}. Each app process reports what it delivered inside its next
 * reservation and, for ids that went quiet, in a periodic flush every `--ledger-flush-ms`
 * (TURNOMATIC_LEDGER_FLUSH_MS, default 1000 ms; the apps inherit this test's environment).
 *
 * 1. kill -9 of one app host under load through the keepalive LB, once with clients that replay a
 *    GET on their own (Bun's fetch on keep-alive) and once with clients that never resend (our raw
 *    keep-alive client). Asserted: zero duplicates (history checker); for every id
 *      client-observed gaps  <=  ledger lost  <=  gaps + failed requests + B
 *    where B bounds the numbers the killed host delivered after its last report (they count as
 *    lost: an overcount, never an undercount). B is measured, not assumed: HAProxy's per-server
 *    2xx counter for the killed host, sampled every SAMPLE_MS, gives how many responses it passed
 *    back in its last flush interval before the kill (flush interval + TIMER_SLACK_MS, since a timer
 *    fires late on a loaded box, + one sample period). That bound is for the host, so it is used for
 *    each id and for the sum over ids. Also: `issued` equals the counter (/actual), and the
 *    never-resend clients see no silent gap at all (I2: gaps <= failed).
 *    The lower bound assumes no client gave up on a response the app did hand over (timeouts are
 *    10 s here; a run with such a timeout would show gaps > lost and fail loudly).
 * 2. A rolling restart (SIGTERM, drain, start, one host after the other) under replaying clients:
 *    `lost == 0` for every id, and nothing failed.
 *
 * Ledgers are read through the LB from the client namespace, after the load, once every live
 * process has had two flush intervals to report.
 * 3. Negative control: the same cluster with delivery reports switched off
 *    (TURNOMATIC_LEDGER_REPORTS=false): every number counts as lost, so the upper bound of 1 fails
 *    for every id. It proves the bound tests the reports, not a ledger that could never be wrong.
 */
import { expect, test } from "bun:test";
import {
  adminToken,
  APP_PORT,
  appNames,
  type ClusterState,
  DRAIN_DELAY_MS,
  lbServerCounter,
  spawnIn,
  startHost,
  stopHost,
  terminateHost,
  waitLbState,
  waitReady,
} from "../../scripts/cluster/topology.ts";
import { formatVerdict, type Verdict } from "../../harness/history-checker.ts";
import { FULL, failures, judge, startLoad, statusCounts, uniqueIds, useCluster } from "./cluster-harness.ts";

const NAME = "dledger";
const CLIENTS = 64;
const LEDGER_FLUSH_MS = Number(process.env.TURNOMATIC_LEDGER_FLUSH_MS ?? 1000);
const SAMPLE_MS = 100;
const TIMER_SLACK_MS = 250;
const startCluster = useCluster(NAME);

interface Ledger {
  readonly id: string;
  readonly issued: number;
  readonly delivered: number;
  readonly lost: number;
}

/** Reads one id's ledger through the LB, from inside the client namespace. */
async function readLedger(state: ClusterState, id: string): Promise<Ledger> {
  const token = adminToken(state);
  if (token === undefined) throw new Error("the cluster has no admin token file");
  const curl = spawnIn(
    state,
    "client",
    ["curl", "-s", "-f", "-H", `Authorization: Bearer ${token}`, `${state.lbUrl}/admin/turno/${id}/ledger`],
    {
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const body = await new Response(curl.stdout as ReadableStream<Uint8Array>).text();
  if ((await curl.exited) !== 0) throw new Error(`ledger of ${id}: curl failed (${body})`);
  const ledger = JSON.parse(body) as Ledger;
  expect(ledger.id).toBe(id);
  expect(ledger.lost).toBe(ledger.issued - ledger.delivered);
  return ledger;
}

async function readLedgers(state: ClusterState, ids: readonly string[]): Promise<Map<string, Ledger>> {
  // Every live process reports within a flush interval; give it two.
  await Bun.sleep(2 * LEDGER_FLUSH_MS + TIMER_SLACK_MS);
  const ledgers = new Map<string, Ledger>();
  for (const id of ids) ledgers.set(id, await readLedger(state, id));
  return ledgers;
}

/** HAProxy's 2xx count of one server, sampled until stopped: [time, count] pairs. */
function sampleServed(state: ClusterState, server: string) {
  const samples: Array<[number, number]> = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const count = (await lbServerCounter(state, "hrsp_2xx").catch(() => ({}) as Record<string, number>))[server];
      if (count !== undefined) samples.push([performance.now(), count]);
      await Bun.sleep(SAMPLE_MS);
    }
  })();
  return {
    samples,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

/** Responses the server passed back in the `windowMs` before `at` (an upper bound: sample granularity added). */
function servedInWindow(samples: ReadonlyArray<[number, number]>, at: number, finalCount: number, windowMs: number): number {
  const before = samples.filter(([time]) => time <= at - windowMs - SAMPLE_MS);
  const base = before.length > 0 ? (before[before.length - 1] as [number, number])[1] : 0;
  return finalCount - base;
}

function perIdBounds(verdict: Verdict, ledgers: Map<string, Ledger>, b: number) {
  return verdict.ids.map((v) => {
    const lost = ledgers.get(v.id)?.lost ?? Number.NaN;
    return { id: v.id, gaps: v.gaps, failed: v.failed, lost, upper: v.gaps + v.failed + b };
  });
}

for (const client of ["fetch", "raw"] as const) {
  test(`kill -9 of an app host behind the keepalive LB (${client} clients): no duplicates, gaps <= ledger lost <= gaps + failed + B`, async () => {
    const state = await startCluster(2, 2);
    expect(state.lbMode).toBe("keepalive");
    const requests = FULL ? 150_000 : 40_000;
    const ids = [...uniqueIds("hot", 4), ...uniqueIds("cool", 28)];
    const load = startLoad(state, { ids, clients: CLIENTS, requests, durationMs: FULL ? 600_000 : 120_000, client });
    const served = sampleServed(state, "app1");
    await load.reach(requests * 0.25);
    const killedAt = performance.now();
    const pids = stopHost(state, "app1");
    await waitLbState(state, ["app1"], "DOWN", 10_000);
    const finalApp1 = (await lbServerCounter(state, "hrsp_2xx")).app1 ?? 0;
    await served.stop();
    const b = servedInWindow(served.samples, killedAt, finalApp1, LEDGER_FLUSH_MS + TIMER_SLACK_MS);
    const result = await load.finished;
    const verdict = judge(result, true);
    const ledgers = await readLedgers(state, ids);
    const bounds = perIdBounds(verdict, ledgers, b);
    const totalLost = bounds.reduce((sum, row) => sum + row.lost, 0);
    console.log(
      `kill-host-ledger (${client}): killed ${pids.length} processes; ${result.history.length} requests, statuses ${JSON.stringify(statusCounts(result.history))}; ` +
        `gaps ${verdict.totals.gaps}, failed ${failures(result.history).length}, ledger lost ${totalLost}, B ${b} (app1's 2xx in its last ${LEDGER_FLUSH_MS + TIMER_SLACK_MS} ms)`,
    );
    expect(pids.length).toBe(3); // supervisor + 2 workers
    expect(verdict.totals.duplicates).toBe(0);
    expect(verdict.totals.orderViolations).toBe(0);
    for (const v of verdict.ids)
      expect({ id: v.id, issued: ledgers.get(v.id)?.issued }).toEqual({ id: v.id, issued: result.after[v.id] });
    for (const row of bounds) {
      expect({ ...row, lowerHolds: row.gaps <= row.lost }).toMatchObject({ id: row.id, lowerHolds: true });
      expect({ ...row, upperHolds: row.lost <= row.upper }).toMatchObject({ id: row.id, upperHolds: true });
    }
    expect(totalLost).toBeLessThanOrEqual(verdict.totals.gaps + verdict.totals.failed + b);
    // The kill did lose numbers somewhere (else the test proved nothing).
    expect(totalLost).toBeGreaterThan(0);
    if (client === "raw") expect(verdict.ok, formatVerdict(verdict)).toBe(true); // no replay: no silent gap
  }, 600_000);
}

test("rolling restart behind the keepalive LB (replaying clients): nothing failed, ledger lost == 0 for every id", async () => {
  const state = await startCluster(2, 2);
  const ids = [...uniqueIds("hot", 4), ...uniqueIds("cool", 28)];
  const load = startLoad(state, {
    ids,
    clients: CLIENTS,
    requests: FULL ? 1_000_000 : 400_000,
    durationMs: FULL ? 60_000 : 20_000,
    client: "fetch",
  });
  await load.reach(2000);
  for (const app of appNames(state)) {
    expect(await terminateHost(state, app, DRAIN_DELAY_MS + 15_000)).toBe(true);
    startHost(state, app);
    await waitReady(state, [`http://${state.hosts[app]?.address}:${APP_PORT}/readyz`]);
    await waitLbState(state, [app], "UP");
  }
  const restartsDoneAt = load.completed();
  const result = await load.finished;
  const verdict = judge(result, false);
  const ledgers = await readLedgers(state, ids);
  const lost = [...ledgers.values()].filter((ledger) => ledger.lost !== 0);
  console.log(
    `kill-host-ledger (rolling restart): ${result.history.length} requests, restarts done at ${restartsDoneAt}; statuses ${JSON.stringify(statusCounts(result.history))}; ids with lost != 0: ${JSON.stringify(lost)}`,
  );
  expect(restartsDoneAt).toBeLessThan(result.history.length);
  expect(verdict.ok, formatVerdict(verdict)).toBe(true);
  expect(statusCounts(result.history)).toEqual({ 200: result.history.length });
  expect(lost).toEqual([]);
  for (const id of ids) expect(ledgers.get(id)?.issued).toBe(result.after[id]);
}, 600_000);

test("negative control: with delivery reports off, the ledger's upper bound fails for every id", async () => {
  process.env.TURNOMATIC_LEDGER_REPORTS = "false";
  let state: ClusterState;
  try {
    state = await startCluster(2, 1);
  } finally {
    delete process.env.TURNOMATIC_LEDGER_REPORTS;
  }
  const ids = uniqueIds("neg", 8);
  const load = startLoad(state, { ids, clients: CLIENTS, requests: 8000, durationMs: 60_000, client: "raw" });
  const result = await load.finished;
  const verdict = judge(result, false);
  const ledgers = await readLedgers(state, ids);
  const bounds = perIdBounds(verdict, ledgers, 0);
  console.log(`kill-host-ledger (reports off): ${JSON.stringify(bounds.slice(0, 3))} ...`);
  expect(verdict.ok, formatVerdict(verdict)).toBe(true);
  for (const row of bounds) expect({ id: row.id, upperHolds: row.lost <= row.upper }).toEqual({ id: row.id, upperHolds: false });
}, 600_000);
