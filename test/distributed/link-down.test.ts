/**
 * One app host's link goes down mid-run (its processes live on, cut off from HAProxy and Redis),
 * then comes back: zero duplicates, a bounded number of failed requests (those stuck on the cut
 * host), and the host rejoins the rotation once its link is up.
 */
import { expect, test } from "bun:test";
import { lbServerCounter, setLink, waitLbState } from "../../scripts/cluster/topology.ts";
import { formatVerdict } from "../../harness/history-checker.ts";
import { FULL, failures, judge, startLoad, statusCounts, uniqueIds, useCluster } from "./cluster-harness.ts";

const NAME = "dlink";
const CLIENTS = 64;
const startCluster = useCluster(NAME);

/**
 * After the link returns, a worker's store may still be reconnecting: its Redis connection went
 * silent during the cut and the silence guard (src/stores/silence-guard.ts) replaced it, and the new
 * one connects on its retry schedule (≤ ~2 s). Meanwhile its turn requests end in a 503 at the
 * deadline; /readyz is answered by one worker at a time, so HAProxy may already have the host UP.
 * This bounds that phase. (Before the guard, the old connection waited for TCP's backed-off
 * retransmission: up to ~6 s after a 6 s cut, and this bound was 12 s.)
 */
const REJOIN_MS = 5000;

test("link of one app host down mid-run and back: no duplicates, bounded failures, recovery", async () => {
  const state = await startCluster(2, 2);
  const ids = [...uniqueIds("hot", 4), ...uniqueIds("cool", 28)];
  const load = startLoad(state, { ids, clients: CLIENTS, requests: 10_000_000, durationMs: 120_000 });
  await load.reach(3000);
  const cutAt = performance.timeOrigin + performance.now();
  setLink(state, "app1", false);
  const detectedMs = await waitLbState(state, ["app1"], "DOWN", 10_000);
  // Long enough for every request stuck on app1 to time out in HAProxy (timeout server 5s).
  await Bun.sleep(FULL ? 10_000 : 5_500);
  setLink(state, "app1", true);
  const linkUpAt = performance.timeOrigin + performance.now();
  const recoveredMs = await waitLbState(state, ["app1"], "UP", 15_000);
  // Past the rejoin phase: from here on, everything must succeed, and app1 must take its share.
  await Bun.sleep(Math.max(0, linkUpAt + REJOIN_MS - (performance.timeOrigin + performance.now())));
  const settledAt = performance.timeOrigin + performance.now();
  const servedBefore = (await lbServerCounter(state, "hrsp_2xx")).app1 ?? 0;
  await load.reach(load.completed() + (FULL ? 30_000 : 5000));
  const servedAfter = (await lbServerCounter(state, "hrsp_2xx")).app1 ?? 0;
  const result = await load.stop();
  const verdict = judge(result, true);
  const failed = failures(result.history);
  const atCut = failed.filter((e) => e.sentAt < linkUpAt);
  const atRejoin = failed.filter((e) => e.sentAt >= linkUpAt);
  const settled = result.history.filter((e) => e.sentAt > settledAt);
  const span = (list: typeof failed) =>
    list.length === 0
      ? "-"
      : `${Math.round(Math.min(...list.map((e) => e.sentAt)) - cutAt)}..${Math.round(Math.max(...list.map((e) => e.sentAt)) - cutAt)} ms after the cut`;
  console.log(
    `link-down: app1 DOWN after ${Math.round(detectedMs)} ms, UP ${Math.round(recoveredMs)} ms after the link returned; ` +
      `${failed.length} failed of ${result.history.length}: ${atCut.length} at the cut (${span(atCut)}), ${atRejoin.length} while rejoining (${span(atRejoin)}); ` +
      `app1 served ${servedAfter - servedBefore} of ${settled.length} after settling; gaps ${verdict.totals.gaps}; statuses ${JSON.stringify(statusCounts(result.history))}`,
  );
  expect(verdict.totals.duplicates).toBe(0);
  expect(verdict.ok, formatVerdict(verdict)).toBe(true);
  // At the cut: only requests on (or headed to) app1 before HAProxy marked it down.
  expect(atCut.length).toBeLessThanOrEqual(2 * CLIENTS);
  expect(atCut.every((e) => e.sentAt < cutAt + detectedMs + 100)).toBe(true);
  // Rejoining: answered failures (the app's 503 at its store deadline), none later than REJOIN_MS.
  expect(atRejoin.every((e) => e.status === 503 && e.sentAt < linkUpAt + REJOIN_MS)).toBe(true);
  // Settled: app1 takes traffic again and nothing fails.
  expect(servedAfter).toBeGreaterThan(servedBefore);
  expect(settled.length).toBeGreaterThan(0);
  expect(settled.every((e) => e.status === 200)).toBe(true);
});
