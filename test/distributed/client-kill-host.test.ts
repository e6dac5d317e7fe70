/**
 * Exactly-once from the caller's side: @turnomatic/client through the production (keep-alive) LB
 * while one app host is killed with kill -9 mid-run.
 *
 * Judged by the history checker on the *logical calls* (test/distributed/exactly-once-load.ts: one
 * entry per `next(id)`, from its start to its answer, retries included), with `faults: false`: no
 * gap is excused. So every call got a number, no number twice, and each id's numbers are exactly
 * 1..N with N its counter after the run (read from /actual). Also asserted: some calls were retried
 * (the kill was felt), and none failed.
 *
 * Negative control (the proof that this run can fail): the same cluster and kill with callers that
 * retry a failed call with a fresh key (the client's retries off, the caller retrying). The numbers
 * whose responses died with the host are then gaps: the checker must report them (gaps > 0) while
 * every call still succeeded, so they are not excused by failures either (up to three kills, as
 * the numbers in flight at a kill vary).
 */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { APP_PORT, type ClusterState, startHost, stopHost, waitLbState, waitReady } from "../../scripts/cluster/topology.ts";
import { checkHistory, formatVerdict, type Verdict } from "../../harness/history-checker.ts";
import { FULL, startRunner, statusCounts, uniqueIds, useCluster } from "./cluster-harness.ts";
import type { ExactlyOnceLoadOptions, ExactlyOnceLoadResult } from "./exactly-once-load.ts";

const NAME = "dclient";
const CALLERS = 64;
const RUNNER = join(import.meta.dir, "exactly-once-load.ts");
const startCluster = useCluster(NAME);

interface KilledRun {
  readonly result: ExactlyOnceLoadResult;
  readonly verdict: Verdict;
  readonly detectedMs: number;
}

/** One run of `calls` logical calls with app1 killed at a quarter of them; app1 is started again after. */
async function runWithKill(state: ClusterState, mode: ExactlyOnceLoadOptions["mode"], calls: number): Promise<KilledRun> {
  const ids = [...uniqueIds(`${mode}-hot`, 4), ...uniqueIds(`${mode}-cool`, 12)];
  const options: Omit<ExactlyOnceLoadOptions, "url" | "out"> = { ids, callers: CALLERS, calls, mode };
  const load = startRunner<ExactlyOnceLoadResult>(state, RUNNER, options);
  await load.reach(calls * 0.25);
  const pids = stopHost(state, "app1");
  expect(pids.length).toBe(3); // supervisor + 2 workers
  const detectedMs = await waitLbState(state, ["app1"], "DOWN", 10_000);
  const result = await load.finished;
  startHost(state, "app1");
  await waitReady(state, [`http://${state.hosts.app1?.address}:${APP_PORT}/readyz`]);
  await waitLbState(state, ["app1"], "UP");
  const verdict = checkHistory(result.history, { after: new Map(Object.entries(result.after)), faults: false });
  const seconds = (result.endedAt - result.startedAt) / 1000;
  console.log(
    `client-kill-host (${mode}): ${result.history.length} logical calls in ${seconds.toFixed(1)} s, ${result.attempts} HTTP attempts, ` +
      `${result.retried} calls retried; HAProxy marked app1 DOWN after ${Math.round(detectedMs)} ms; statuses ${JSON.stringify(statusCounts(result.history))}; ` +
      `errors ${JSON.stringify(result.errors)}; duplicates ${verdict.totals.duplicates}, gaps ${verdict.totals.gaps}`,
  );
  return { result, verdict, detectedMs };
}

test("exactly-once client through the keep-alive LB, kill -9 of an app host: zero gaps, zero duplicates; a fresh-key control shows gaps", async () => {
  const state = await startCluster(2, 2);
  const calls = FULL ? 100_000 : 20_000;

  const exact = await runWithKill(state, "same-key", calls);
  expect(exact.result.history.length).toBe(calls);
  expect(exact.result.errors).toEqual({});
  expect(exact.result.history.every((entry) => entry.status === 200)).toBe(true);
  expect(exact.result.retried).toBeGreaterThan(0);
  expect(exact.verdict.totals.duplicates).toBe(0);
  expect(exact.verdict.totals.gaps).toBe(0);
  expect(exact.verdict.ok, formatVerdict(exact.verdict)).toBe(true);

  // How many numbers die with the host depends on what it had in flight at the kill (measured 0 to
  // 26 per kill): up to three kills, so a run that happened to lose none does not hide the loss.
  let control: KilledRun | undefined;
  for (let run = 0; run < 3 && (control === undefined || control.verdict.totals.gaps === 0); run++) {
    control = await runWithKill(state, "fresh-key", calls);
    expect(control.result.history.length).toBe(calls);
    expect(control.result.history.every((entry) => entry.status === 200)).toBe(true);
    expect(control.verdict.totals.duplicates).toBe(0);
  }
  expect(control?.verdict.totals.gaps).toBeGreaterThan(0);
  expect(control?.verdict.ok).toBe(false);
});
