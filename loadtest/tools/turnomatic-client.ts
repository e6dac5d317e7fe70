/**
 * `--tool turnomatic-client`: the exactly-once mode. C callers (`--connections`), each with one
 * logical call in flight, call `next(id)` of @turnomatic/client (POST with an Idempotency-Key,
 * retried with the same key) in a closed loop for the duration; a call still running at the end
 * is finished, never abandoned. The history the verifier reads is one entry per *logical call*
 * (from its start to its answer, retries included), so the checker judges what the caller saw:
 * with no call failed, any gap or duplicate is a violation. Latency is per logical call too.
 */
import type { HistoryEntry } from "../../harness/history-checker.ts";
import { percentiles } from "../../bench/toolkit/stats.ts";
import { TurnomaticClient, TurnomaticError, UnavailableError } from "../../client/index.ts";
import { allIds, createPicker } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { progress } from "../result.ts";
import { readCounters, verifyHistory } from "../verify.ts";
import { countStatus, non2xxOf, type ToolOutcome } from "./tool.ts";

const clock = () => performance.now();

export async function runTurnomaticClient(options: LoadOptions): Promise<ToolOutcome> {
  const ids = allIds(options.idPrefix, options.ids);
  const pick = createPicker(options.dist, ids.length);
  const before = options.verify ? await readCounters(options.target, ids) : new Map<string, number>();
  const client = new TurnomaticClient({ baseUrl: options.target, timeoutMs: options.timeoutMs });
  const history: HistoryEntry[] = [];
  const latencies: number[] = [];
  const statusCounts: Record<string, number> = {};
  const finalErrors: Record<string, number> = {};
  let attempts = 0;
  let retried = 0;
  progress(`turnomatic-client: ${options.connections} callers (exactly-once next(id)), ${options.duration}s`);
  const startedAt = clock();
  const stopAt = startedAt + options.duration * 1000;
  const caller = async () => {
    while (clock() < stopAt) {
      const id = ids[pick()] as string;
      const sentAt = clock();
      try {
        const turn = await client.next(id);
        const doneAt = clock();
        attempts += turn.attempts;
        if (turn.attempts > 1) retried++;
        latencies.push(doneAt - sentAt);
        countStatus(statusCounts, 200);
        if (options.verify) history.push({ id, sentAt, doneAt, status: 200, turno: turn.turno });
      } catch (error) {
        const doneAt = clock();
        if (!(error instanceof TurnomaticError)) throw error;
        attempts += error instanceof UnavailableError ? error.attempts : 1;
        finalErrors[error.code] = (finalErrors[error.code] ?? 0) + 1;
        countStatus(statusCounts, error.status);
        latencies.push(doneAt - sentAt);
        if (options.verify) history.push({ id, sentAt, doneAt, status: error.status });
      }
    }
  };
  await Promise.all(Array.from({ length: options.connections }, caller));
  const seconds = (clock() - startedAt) / 1000;
  let verification: ToolOutcome["verification"];
  if (options.verify) {
    const after = await readCounters(options.target, ids);
    verification = verifyHistory(history, before, after);
  }
  const calls = latencies.length;
  return {
    requests: calls,
    seconds,
    latencyMs: percentiles(latencies),
    errors: statusCounts["0"] ?? 0,
    non2xx: non2xxOf(statusCounts) - (statusCounts["0"] ?? 0),
    statusCounts,
    verification,
    notes: [
      "closed loop of logical calls: each is one next(id) of @turnomatic/client, retries with the same Idempotency-Key included; latency per logical call",
      `${attempts} HTTP attempts for ${calls} calls; ${retried} calls needed a retry; final errors ${JSON.stringify(finalErrors)}`,
    ],
    extra: { attempts, retried, finalErrors },
  };
}
