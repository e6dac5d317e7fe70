/**
 * Rolling restart under load: each app host in turn gets SIGTERM (it fails /readyz, HAProxy takes it
 * out of rotation, it finishes what it accepted and exits), is started again and waits until HAProxy
 * has it UP before the next one goes. Zero failed requests, zero duplicates, I1-I4 hold.
 */
import { expect, test } from "bun:test";
import {
  APP_PORT,
  appNames,
  DRAIN_DELAY_MS,
  lbServerCounter,
  namespacePids,
  startHost,
  terminateHost,
  waitLbState,
  waitReady,
} from "../../scripts/cluster/topology.ts";
import { formatVerdict } from "../../harness/history-checker.ts";
import { FULL, judge, startLoad, statusCounts, uniqueIds, useCluster } from "./cluster-harness.ts";

const NAME = "droll";
const startCluster = useCluster(NAME);

test("rolling restart of every app host under load: zero failed requests, zero duplicates", async () => {
  const state = await startCluster(2, 2);
  const ids = [...uniqueIds("hot", 4), ...uniqueIds("cool", 28)];
  // Bounded by time: the load must outlast the whole rolling restart (and is capped by count).
  const load = startLoad(state, {
    ids,
    clients: 64,
    requests: FULL ? 1_000_000 : 400_000,
    durationMs: FULL ? 60_000 : 20_000,
  });
  await load.reach(2000);
  const rounds = FULL ? 2 : 1;
  for (let round = 0; round < rounds; round++) {
    for (const app of appNames(state)) {
      const namespace = state.hosts[app]?.namespace as string;
      const before = namespacePids(namespace);
      expect(await terminateHost(state, app, DRAIN_DELAY_MS + 15_000)).toBe(true);
      startHost(state, app);
      await waitReady(state, [`http://${state.hosts[app]?.address}:${APP_PORT}/readyz`]);
      await waitLbState(state, [app], "UP");
      const after = namespacePids(namespace);
      expect(after.some((pid) => before.includes(pid))).toBe(false);
      console.log(`rolling-restart: ${app} restarted after ${load.completed()} requests`);
    }
  }
  const restartsDoneAt = load.completed();
  const result = await load.finished;
  const verdict = judge(result, false);
  const seconds = (result.endedAt - result.startedAt) / 1000;
  console.log(
    `rolling-restart: ${result.history.length} requests in ${seconds.toFixed(1)} s, restarts done at ${restartsDoneAt}; statuses ${JSON.stringify(statusCounts(result.history))}`,
  );
  expect(restartsDoneAt).toBeLessThan(result.history.length); // the load outlasted the restarts
  expect(verdict.ok, formatVerdict(verdict)).toBe(true);
  expect(verdict.totals.duplicates).toBe(0);
  expect(verdict.totals.failed).toBe(0);
  expect(statusCounts(result.history)).toEqual({ 200: result.history.length });
  const served = await lbServerCounter(state, "hrsp_2xx");
  expect(served.app1 ?? 0).toBeGreaterThan(0);
  expect(served.app2 ?? 0).toBeGreaterThan(0);
});
