/**
 * kill -9 one app host mid-run behind the *strict* LB (`--lb-mode strict`: option httpclose): zero
 * duplicates; the only failures are requests that were in flight on it while it died (all sent before
 * HAProxy marked it down, counted and printed), and even a client that replays GETs on its own (Bun's
 * fetch) sees every lost number as a failure (I2: gaps <= failed). HAProxy marks the host down within
 * its health-check window and the run goes on on the other host. This is what strict mode promises;
 * the default keepalive mode, where a replaying client's gap is counted by the store's ledger
 * instead, is tested in kill-host-ledger.test.ts.
 */
import { expect, test } from "bun:test";
import { checkWindowMs } from "../../scripts/cluster/haproxy-config.ts";
import { CHECK, stopHost, waitLbState } from "../../scripts/cluster/topology.ts";
import { formatVerdict } from "../../harness/history-checker.ts";
import { FULL, failures, judge, startLoad, statusCounts, uniqueIds, useCluster } from "./cluster-harness.ts";

const NAME = "dkill";
const CLIENTS = 64;
const startCluster = useCluster(NAME);

// "fetch": Bun's fetch, which (like browsers) silently resends a GET when a keep-alive connection
// drops; the HAProxy template must leave it nothing to resend. "raw": a client that never resends.
for (const client of ["raw", "fetch"] as const) {
  test(`strict LB, kill -9 of one app host mid-run (${client} client): no duplicates, failures only for its in-flight requests`, async () => {
    const state = await startCluster(2, 2, "strict");
    const requests = FULL ? 150_000 : 40_000;
    const ids = [...uniqueIds("hot", 4), ...uniqueIds("cool", 28)];
    const load = startLoad(state, { ids, clients: CLIENTS, requests, durationMs: FULL ? 600_000 : 120_000, client });
    await load.reach(requests * 0.25);
    const killedAt = performance.timeOrigin + performance.now();
    const pids = stopHost(state, "app1");
    const detectedMs = await waitLbState(state, ["app1"], "DOWN", 10_000);
    const result = await load.finished;
    const verdict = judge(result, true);
    const failed = failures(result.history);
    const window = checkWindowMs({ checkInterMs: CHECK.interMs, checkFall: CHECK.fall });
    // Sent after HAProxy had marked the host down (plus a little scheduling slack): must all succeed.
    const knownDownAt = killedAt + detectedMs + 50;
    const lateFailures = failed.filter((entry) => entry.sentAt > knownDownAt);
    const afterKill = result.history.filter((entry) => entry.sentAt > knownDownAt && entry.status === 200).length;
    const seconds = (result.endedAt - result.startedAt) / 1000;
    console.log(
      `kill-host: killed ${pids.length} processes; HAProxy marked app1 DOWN after ${Math.round(detectedMs)} ms (window ${window} ms); ` +
        `${failed.length} failed requests (in flight on app1), ${afterKill} served after; ${Math.round(result.history.length / seconds)} req/s; statuses ${JSON.stringify(statusCounts(result.history))}; ` +
        `gaps ${verdict.totals.gaps}; failures sent from ${Math.round(Math.min(...failed.map((e) => e.sentAt)) - killedAt)} to ${Math.round(Math.max(...failed.map((e) => e.sentAt)) - killedAt)} ms after the kill`,
    );
    expect(pids.length).toBe(3); // supervisor + 2 workers
    expect(verdict.totals.duplicates).toBe(0);
    expect(verdict.ok, formatVerdict(verdict)).toBe(true);
    expect(result.history.length).toBe(requests);
    expect(detectedMs).toBeLessThanOrEqual(window + 500);
    // Only requests that were sent while the host was dying fail: none sent after HAProxy knew. A host's
    // processes do not vanish in one instant: the kernel frees a killed process's memory before it
    // closes its files, so for some tens of ms the listening socket still accepts connections that no
    // one will answer. A connection may thus lose the request in flight at the kill and the one it sent
    // right after; more than that would mean HAProxy kept routing to the dead host.
    expect(lateFailures).toEqual([]);
    expect(failed.length).toBeLessThanOrEqual(2 * CLIENTS);
    expect(afterKill).toBeGreaterThan(0);
  });
}
