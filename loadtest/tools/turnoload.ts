/**
 * turnoload: our open-loop generator. Request k is due at start + k / rate whatever happened to the
 * earlier ones (constant arrival rate), and its latency is measured from that intended time, so a
 * stalled server shows up as latency instead of silently lowering the offered load (coordinated
 * omission, as in wrk2 / HdrHistogram). The schedule is split over worker threads
 * (turnoload-worker.ts, one event loop and its own connections each) when one thread cannot keep
 * the rate; each worker measures its own **scheduling error** (how late it noticed a due request),
 * which `loadtest:max` uses to tell a generator that fell behind from a service that did.
 *
 * Percentiles come from HDR histograms merged over the workers. The full history (id, send and
 * completion times, status, turno) is kept for the I1-I4 checker, on this thread's clock: each
 * worker's clock offset is measured by ping/pong (best of 8 round trips), and with several
 * workers every request's interval is widened by that measurement's uncertainty, so a real-time
 * order violation is reported only when it is certain (one within the uncertainty, some µs, is
 * not judged).
 */
import type { HistoryEntry } from "../../harness/history-checker.ts";
import { type Histogram, histogramPercentiles, mergeHistograms } from "../../bench/toolkit/hdr.ts";
import type { Percentiles } from "../../bench/toolkit/stats.ts";
import { allIds } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { progress } from "../result.ts";
import { readCounters, verifyHistory } from "../verify.ts";
import { non2xxOf, type ToolOutcome } from "./tool.ts";
import type { LoadSchedule, WorkerJob, WorkerMessage, WorkerReply, WorkerReport } from "./turnoload-worker.ts";

export { hostileRequest } from "./hostile.ts";
export { turnoOf } from "./turnoload-worker.ts";

export const DEFAULT_RATE = 1000;
/** Rate one worker thread is asked to carry at most when the worker count is automatic. */
export const RATE_PER_WORKER = 40_000;

export interface OpenLoopOptions extends LoadSchedule {
  /** Connections over all workers (each worker gets its share, at least 1). */
  readonly connections: number;
  readonly workers: number;
}

/** The counts every worker reports, summed over the workers. */
type WorkerCounts = Pick<
  WorkerReport,
  "sent" | "answered" | "errors" | "statusCounts" | "shapeErrors" | "shapeExamples" | "hostile" | "maxBacklog"
>;

export interface OpenLoopRun extends WorkerCounts {
  readonly rate: number;
  readonly workers: number;
  /** From the start to the last response (at least the scheduled duration). */
  readonly seconds: number;
  /** From each request's intended send time to its response (the SLO's latency). */
  readonly latencyMs: Percentiles;
  /** From the actual write to the response: what the service and the network took. */
  readonly serviceMs: Percentiles;
  /** The generator's scheduling error: how late a due request was noticed. */
  readonly lagMs: Percentiles;
  /** From the intended send time to the write: the scheduling error plus waits for a free connection. */
  readonly sendDelayMs: Percentiles;
  readonly latency: Histogram;
  readonly history: HistoryEntry[];
}

const clock = () => performance.now();
const WORKER_URL = new URL("./turnoload-worker.ts", import.meta.url);

/** How many workers to use for a rate when not told: one per RATE_PER_WORKER, at most `max`. */
export function autoWorkers(rate: number, max: number): number {
  return Math.max(1, Math.min(max, Math.ceil(rate / RATE_PER_WORKER)));
}

class WorkerStartError extends Error {
  override readonly name = "WorkerStartError";
}

/** Worker threads kept across runs (warm JIT, no start-up cost per step); close() ends them. */
export class OpenLoopGenerator {
  readonly #workers: Worker[] = [];

  async run(options: OpenLoopOptions): Promise<OpenLoopRun> {
    try {
      return await this.#run(options);
    } catch (error) {
      // A worker thread that failed to load (seen once on Bun 1.4.5: ELOOP reading a module while
      // starting) is replaced once; a second failure, or any other error, is reported.
      if (!(error instanceof WorkerStartError)) throw error;
      progress(`turnoload: ${error.message}; starting the worker threads again`);
      this.close();
      return await this.#run(options);
    }
  }

  async #run(options: OpenLoopOptions): Promise<OpenLoopRun> {
    while (this.#workers.length < options.workers) this.#workers.push(new Worker(WORKER_URL.href));
    const used = this.#workers.slice(0, options.workers);
    const perWorker = Math.max(1, Math.floor(options.connections / used.length));
    const ask = (worker: Worker, message: WorkerMessage, want: WorkerReply["type"]) =>
      new Promise<WorkerReply>((resolve, reject) => {
        worker.onmessage = (event: MessageEvent<WorkerReply>) => {
          if (event.data.type === "failed") reject(new Error(event.data.error));
          else if (event.data.type === want) resolve(event.data);
        };
        worker.onerror = (event) => reject(new WorkerStartError(`turnoload worker failed: ${event.message}`));
        worker.postMessage(message);
      });
    await Promise.all(
      used.map((worker, index) => {
        const job: WorkerJob = { ...options, index, workers: used.length, connections: perWorker };
        return ask(worker, { type: "connect", job }, "ready");
      }),
    );
    const clocks: ClockOffset[] = [];
    for (const worker of used) clocks.push(await measureOffset((m) => ask(worker, m, "pong")));
    const startAt = clock() + 20;
    const replies = await Promise.all(
      used.map((worker, i) => ask(worker, { type: "start", startAt: startAt + (clocks[i] as ClockOffset).offset }, "done")),
    );
    const reports = replies.map((r, i) =>
      onMainClock((r as { report: WorkerReport }).report, clocks[i] as ClockOffset, used.length > 1),
    );
    return merge(options, startAt, reports);
  }

  close(): void {
    for (const worker of this.#workers.splice(0)) worker.terminate();
  }
}

interface ClockOffset {
  /** Worker clock minus this thread's clock, ms. */
  readonly offset: number;
  /** Half the best round trip: the offset is right to within this, ms. */
  readonly uncertainty: number;
}

async function measureOffset(ping: (m: WorkerMessage) => Promise<WorkerReply>): Promise<ClockOffset> {
  let best: ClockOffset = { offset: 0, uncertainty: Number.POSITIVE_INFINITY };
  for (let i = 0; i < 8; i++) {
    const t0 = clock();
    const reply = (await ping({ type: "ping" })) as { at: number };
    const t1 = clock();
    if ((t1 - t0) / 2 < best.uncertainty) best = { offset: reply.at - (t0 + t1) / 2, uncertainty: (t1 - t0) / 2 };
  }
  return best;
}

/** Moves a worker's times onto this thread's clock; widens each request by the uncertainty when asked. */
function onMainClock(report: WorkerReport, clock: ClockOffset, widen: boolean): WorkerReport {
  const h = report.history;
  const margin = widen ? clock.uncertainty : 0;
  if (h !== undefined)
    for (let i = 0; i < h.length; i++) {
      h.sentAt[i] = (h.sentAt[i] as number) - clock.offset - margin;
      h.doneAt[i] = (h.doneAt[i] as number) - clock.offset + margin;
    }
  return { ...report, firstSendAt: report.firstSendAt - clock.offset, lastDoneAt: report.lastDoneAt - clock.offset };
}

function merge(options: OpenLoopOptions, startAt: number, reports: WorkerReport[]): OpenLoopRun {
  const latency = mergeHistograms(reports.map((r) => r.latency));
  const service = mergeHistograms(reports.map((r) => r.service));
  const lag = mergeHistograms(reports.map((r) => r.lag));
  const sendDelay = mergeHistograms(reports.map((r) => r.sendDelay));
  const statusCounts: Record<string, number> = {};
  const hostile = { sent: 0, refused: 0, wrong: 0, examples: [] as string[] };
  const history: HistoryEntry[] = [];
  let lastDone = startAt;
  for (const r of reports) {
    for (const [status, n] of Object.entries(r.statusCounts)) statusCounts[status] = (statusCounts[status] ?? 0) + n;
    hostile.sent += r.hostile.sent;
    hostile.refused += r.hostile.refused;
    hostile.wrong += r.hostile.wrong;
    hostile.examples.push(...r.hostile.examples);
    if (r.lastDoneAt > lastDone) lastDone = r.lastDoneAt;
    const h = r.history;
    if (h === undefined) continue;
    for (let i = 0; i < h.length; i++) {
      const turno = h.turno[i] as number;
      const entry = {
        id: options.ids[h.id[i] as number] as string,
        sentAt: h.sentAt[i] as number,
        doneAt: h.doneAt[i] as number,
        status: h.status[i] as number,
      };
      history.push(Number.isNaN(turno) ? entry : { ...entry, turno });
    }
  }
  const sum = (f: (r: WorkerReport) => number) => reports.reduce((n, r) => n + f(r), 0);
  const result: OpenLoopRun = {
    rate: options.rate,
    workers: reports.length,
    seconds: Math.max(options.seconds, (lastDone - startAt) / 1000),
    sent: sum((r) => r.sent),
    answered: sum((r) => r.answered),
    errors: sum((r) => r.errors),
    statusCounts,
    shapeErrors: sum((r) => r.shapeErrors),
    shapeExamples: reports.flatMap((r) => r.shapeExamples).slice(0, 10),
    hostile,
    maxBacklog: Math.max(...reports.map((r) => r.maxBacklog)),
    latencyMs: histogramPercentiles(latency),
    serviceMs: histogramPercentiles(service),
    lagMs: histogramPercentiles(lag),
    sendDelayMs: histogramPercentiles(sendDelay),
    latency,
    history,
  };
  service.destroy();
  lag.destroy();
  sendDelay.destroy();
  return result;
}

/** The `--tool turnoload` adapter of the load-test CLI: one open-loop run, verified unless --no-verify. */
export async function runTurnoload(options: LoadOptions): Promise<ToolOutcome> {
  const rate = options.rate ?? DEFAULT_RATE;
  const ids = allIds(options.idPrefix, options.ids);
  const workers = options.workers ?? autoWorkers(rate, navigator.hardwareConcurrency || 1);
  const before = options.verify ? await readCounters(options.target, ids) : new Map<string, number>();
  progress(
    `turnoload: open loop at ${rate} req/s for ${options.duration}s over ${ids.length} ids (${options.dist}), ${workers} worker thread(s), ${options.connections} connections`,
  );
  const generator = new OpenLoopGenerator();
  let run: OpenLoopRun;
  try {
    run = await generator.run({
      target: options.target,
      rate,
      seconds: options.duration,
      connections: options.connections,
      ids,
      dist: options.dist,
      hostile: options.hostile,
      timeoutMs: options.timeoutMs,
      record: options.verify,
      workers,
    });
  } finally {
    generator.close();
  }
  run.latency.destroy();
  const notes = [
    "open loop: latency measured from each request's intended send time (free of coordinated omission); percentiles from HDR histograms",
    `scheduling error (generator lateness) p50 ${run.lagMs.p50} ms, p99 ${run.lagMs.p99} ms; service time from the actual send p50 ${run.serviceMs.p50} ms, p99 ${run.serviceMs.p99} ms`,
    `at most ${run.maxBacklog} due requests waited for one of the ${options.connections} connections`,
  ];
  const extraProblems: string[] = [];
  if (run.shapeErrors > 0) extraProblems.push(`${run.shapeErrors} 200 responses without {"id","turno"}: ${run.shapeExamples[0]}`);
  if (run.hostile.wrong > 0)
    extraProblems.push(
      `${run.hostile.wrong} of ${run.hostile.sent} hostile requests were not refused with a 4xx: ${run.hostile.examples.join("; ")}`,
    );
  let verification: ToolOutcome["verification"];
  if (options.verify) {
    const after = await readCounters(options.target, ids);
    verification = verifyHistory(run.history, before, after, extraProblems);
  }
  return {
    requests: run.answered + run.errors + run.hostile.sent,
    seconds: run.seconds,
    latencyMs: run.latencyMs,
    errors: run.errors,
    non2xx: non2xxOf(run.statusCounts) - (run.statusCounts["0"] ?? 0),
    statusCounts: run.statusCounts,
    verification,
    notes,
    extra: {
      offeredRate: rate,
      workers: run.workers,
      schedulingErrorMs: run.lagMs,
      sendDelayMs: run.sendDelayMs,
      serviceTimeMs: run.serviceMs,
      hostile: run.hostile,
      maxBacklog: run.maxBacklog,
    },
  };
}
