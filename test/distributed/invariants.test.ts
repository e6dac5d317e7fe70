/**
 * 2 app hosts x 2 workers behind HAProxy, >= 64 connections: I1-I4 hold over every request
 * (>= 100k with TURNOMATIC_FULL=1; a shorter run in CI).
 */
import { expect, test } from "bun:test";
import { APP_METRICS_PORT, type ClusterState, lbServerCounter, spawnIn, waitReady } from "../../scripts/cluster/topology.ts";
import { formatVerdict } from "../../harness/history-checker.ts";
import { FULL, judge, startLoad, statusCounts, uniqueIds, useCluster } from "./cluster-harness.ts";

const NAME = "dinv";
const startCluster = useCluster(NAME);

test("2 hosts x 2 workers through HAProxy: every request gets a unique, gap-free, ordered turno", async () => {
  const state = await startCluster(2, 2);
  const requests = FULL ? 100_000 : 20_000;
  // A few hot ids (contended by every worker of both hosts) and many cooler ones.
  const ids = [...uniqueIds("hot", 4), ...uniqueIds("cool", 60)];
  const load = startLoad(state, { ids, clients: 64, requests, durationMs: FULL ? 600_000 : 120_000 });
  const result = await load.finished;
  const verdict = judge(result, false);
  const seconds = (result.endedAt - result.startedAt) / 1000;
  console.log(
    `invariants: ${result.history.length} requests in ${seconds.toFixed(1)} s (${Math.round(result.history.length / seconds)}/s), statuses ${JSON.stringify(statusCounts(result.history))}`,
  );
  expect(verdict.ok, formatVerdict(verdict)).toBe(true);
  expect(result.history.length).toBe(requests);
  expect(verdict.totals.issued).toBe(requests);
  expect(verdict.totals.failed).toBe(0);
  // Both hosts served: HAProxy's per-server 2xx counters.
  const served = await lbServerCounter(state, "hrsp_2xx");
  console.log(`invariants: 2xx per host ${JSON.stringify(served)}`);
  expect(served.app1 ?? 0).toBeGreaterThan(requests / 10);
  expect(served.app2 ?? 0).toBeGreaterThan(requests / 10);
  // HAProxy's Prometheus exporter and each host's (supervisor-aggregated) /metrics answer.
  const lbMetrics = await fetchInside(state, state.lbStatsUrl);
  expect(lbMetrics).toMatch(/^haproxy_server_status\{proxy="turnomatic_apps",server="app1",state="UP"\} 1$/m);
  await waitReady(state, [`http://${state.hosts.app1?.address}:${APP_METRICS_PORT}/metrics`], 5000);
});

/** GET `url` from inside the client namespace (the test's own namespace cannot reach the topology). */
async function fetchInside(state: ClusterState, url: string): Promise<string> {
  const child = spawnIn(
    state,
    "client",
    [process.execPath, "-e", `process.stdout.write(await (await fetch(${JSON.stringify(url)})).text())`],
    {
      stdout: "pipe",
      stderr: "pipe",
    },
  );
  const body = await new Response(child.stdout as ReadableStream<Uint8Array>).text();
  expect(await child.exited).toBe(0);
  return body;
}
