/**
 * One app host's link goes down mid-run (its processes live on, cut off from HAProxy and Redis),
 * then comes back: zero duplicates, a bounded number of failed requests (those stuck on the cut
 * host), and the host rejoins the rotation once its link is up.
 */
import { afterAll, expect, test } from "bun:test";
import { lbServerCounter, setLink, waitLbState } from "../../scripts/cluster/topology.ts";
import { formatVerdict } from "../helpers/history-checker.ts";
import {
  FULL,
  failures,
  judge,
  requireClusterPrerequisites,
  removeCluster,
  startCluster,
  startLoad,
  statusCounts,
  uniqueIds,
} from "./cluster-harness.ts";

const NAME = "dlink";
const CLIENTS = 64;
afterAll(() => removeCluster(NAME));

test("link of one app host down mid-run and back: no duplicates, bounded failures, recovery", async () => {
  requireClusterPrerequisites();
  const state = await startCluster(NAME, 2, 2);
  const ids = [...uniqueIds("hot", 4), ...uniqueIds("cool", 28)];
  const load = startLoad(state, {
    ids,
    clients: CLIENTS,
    requests: FULL ? 1_000_000 : 400_000,
    durationMs: FULL ? 40_000 : 16_000,
  });
  await load.reach(3000);
  const cutAt = performance.timeOrigin + performance.now();
  setLink(state, "app1", false);
  const detectedMs = await waitLbState(state, ["app1"], "DOWN", 10_000);
  // Long enough for every request stuck on app1 to time out in HAProxy (timeout server 5s).
  await Bun.sleep(FULL ? 10_000 : 5_500);
  setLink(state, "app1", true);
  const servedBeforeRecovery = (await lbServerCounter(state, "hrsp_2xx")).app1 ?? 0;
  const recoveredMs = await waitLbState(state, ["app1"], "UP", 15_000);
  const recoveredAt = performance.timeOrigin + performance.now();
  await load.reach(load.completed() + 3000);
  const servedAfterRecovery = (await lbServerCounter(state, "hrsp_2xx")).app1 ?? 0;
  const result = await load.finished;
  const verdict = judge(result, true);
  const failed = failures(result.history);
  const afterRecovery = result.history.filter((e) => e.sentAt > recoveredAt);
  console.log(
    `link-down: app1 DOWN after ${Math.round(detectedMs)} ms, UP ${Math.round(recoveredMs)} ms after the link returned; ` +
      `${failed.length} failed of ${result.history.length} (sent ${Math.round(Math.min(...failed.map((e) => e.sentAt)) - cutAt)}..${Math.round(Math.max(...failed.map((e) => e.sentAt)) - cutAt)} ms after the cut); ` +
      `app1 served ${servedAfterRecovery - servedBeforeRecovery} after recovery; gaps ${verdict.totals.gaps}; statuses ${JSON.stringify(statusCounts(result.history))}`,
  );
  expect(verdict.totals.duplicates).toBe(0);
  expect(verdict.ok, formatVerdict(verdict)).toBe(true);
  // Bounded: only requests that were on (or headed to) app1 before HAProxy marked it down.
  expect(failed.length).toBeLessThanOrEqual(2 * CLIENTS);
  expect(failed.every((e) => e.sentAt < cutAt + detectedMs + 100)).toBe(true);
  // Recovery: app1 takes traffic again and nothing fails after it is back.
  expect(servedAfterRecovery).toBeGreaterThan(servedBeforeRecovery);
  expect(afterRecovery.length).toBeGreaterThan(0);
  expect(afterRecovery.every((e) => e.status === 200)).toBe(true);
});
