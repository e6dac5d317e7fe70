/**
 * Supervisor mode (`--workers N`, N > 1): this process serves no turns itself. It spawns N worker
 * processes of the same entry point, each listening on the same port with SO_REUSEPORT (the kernel
 * spreads new connections over them), restarts a crashed worker with exponential backoff, serves the
 * host-wide /metrics by aggregating every live worker's registry, and on SIGTERM/SIGINT forwards the
 * signal so each worker runs its own graceful drain, then exits 0 once they are all gone.
 *
 * Invariants across workers: each worker coalesces on its own, and every reservation goes through the
 * shared store's atomic reserve, so two workers can never hand out the same number.
 */
import type { Subprocess } from "bun";
import { AggregatorRegistry } from "prom-client";
import type { Config } from "../config.ts";
import type { Logger } from "../observability/logger.ts";
import { metricsUrls, type RenderedMetrics, startMetricsServer } from "../observability/metrics-server.ts";
import type { BusyId } from "../observability/busy-ids.ts";
import { STATUS_BUSIEST, VERSION } from "../observability/instrument.ts";
import { createStatusHandler, type MetricJson } from "../observability/status.ts";
import { isMetricsReply, type MetricsRequest } from "./ipc-messages.ts";

export interface SupervisorOptions {
  /** Command that starts one worker (default: this Bun binary, its flags, and this entry with argv). */
  readonly command?: readonly string[];
  /** First restart delay after a crash (ms). Default 100. */
  readonly restartInitialMs?: number;
  /** Longest restart delay (ms). Default 10000. */
  readonly restartMaxMs?: number;
  /** A worker that lived this long resets the backoff (ms). Default 10000. */
  readonly stableAfterMs?: number;
  /** Longest wait for a worker's metrics reply (ms). Default 2000. */
  readonly metricsTimeoutMs?: number;
}

interface WorkerSlot {
  readonly index: number;
  process: Subprocess | undefined;
  startedAt: number;
  failures: number;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
}

interface PendingScrape {
  readonly expected: Set<number>;
  readonly replies: object[][];
  readonly busiest: BusyId[];
  readonly done: () => void;
}

export class Supervisor {
  readonly #logger: Logger;
  readonly #command: readonly string[];
  readonly #restartInitialMs: number;
  readonly #restartMaxMs: number;
  readonly #stableAfterMs: number;
  readonly #metricsTimeoutMs: number;
  readonly #slots: WorkerSlot[];
  readonly #scrapes = new Map<number, PendingScrape>();
  #nextSeq = 1;
  #busiest: BusyId[] = [];
  #stopping = false;
  /** Restarts so far (for tests and logs). */
  restarts = 0;

  constructor(config: Config, logger: Logger, options: SupervisorOptions = {}) {
    this.#logger = logger;
    this.#command = options.command ?? [process.execPath, ...process.execArgv, Bun.main, ...process.argv.slice(2)];
    this.#restartInitialMs = options.restartInitialMs ?? 100;
    this.#restartMaxMs = options.restartMaxMs ?? 10_000;
    this.#stableAfterMs = options.stableAfterMs ?? 10_000;
    this.#metricsTimeoutMs = options.metricsTimeoutMs ?? 2000;
    this.#slots = Array.from({ length: config.workers }, (_, index) => ({
      index,
      process: undefined,
      startedAt: 0,
      failures: 0,
      restartTimer: undefined,
    }));
  }

  start(): void {
    for (const slot of this.#slots) this.#spawn(slot);
  }

  /** Pids of the live workers. */
  get pids(): number[] {
    return this.#slots.flatMap((slot) => (slot.process === undefined ? [] : [slot.process.pid]));
  }

  #spawn(slot: WorkerSlot): void {
    slot.restartTimer = undefined;
    const child = Bun.spawn([...this.#command], {
      env: { ...process.env, TURNOMATIC_WORKER_ID: String(slot.index) },
      stdio: ["ignore", "inherit", "inherit"],
      serialization: "json",
      ipc: (message) => this.#onMessage(slot.index, message),
    });
    slot.process = child;
    slot.startedAt = performance.now();
    this.#logger.info("worker started", { event: "worker.start", worker: slot.index, workerPid: child.pid });
    void child.exited.then((code) => this.#onExit(slot, child, code));
  }

  #onExit(slot: WorkerSlot, child: Subprocess, code: number): void {
    if (slot.process !== child) return;
    slot.process = undefined;
    for (const scrape of this.#scrapes.values()) {
      scrape.expected.delete(slot.index);
      if (scrape.expected.size === 0) scrape.done();
    }
    if (this.#stopping) return;
    const lived = performance.now() - slot.startedAt;
    slot.failures = lived >= this.#stableAfterMs ? 1 : slot.failures + 1;
    const delayMs = Math.min(this.#restartMaxMs, this.#restartInitialMs * 2 ** (slot.failures - 1));
    this.restarts++;
    this.#logger.error("worker exited; restarting", {
      event: "worker.restart",
      worker: slot.index,
      workerPid: child.pid,
      exitCode: code,
      signal: child.signalCode ?? undefined,
      failures: slot.failures,
      delayMs,
    });
    slot.restartTimer = setTimeout(() => this.#spawn(slot), delayMs);
  }

  #onMessage(index: number, message: unknown): void {
    if (!isMetricsReply(message)) return;
    const scrape = this.#scrapes.get(message.seq);
    if (scrape === undefined || !scrape.expected.delete(index)) return;
    scrape.replies.push([...message.metrics]);
    scrape.busiest.push(...(message.busiest ?? []));
    if (scrape.expected.size === 0) scrape.done();
  }

  /** Every live worker's registry, merged so that each worker is counted once (counters summed). */
  async renderMetrics(): Promise<RenderedMetrics> {
    const registry = await this.#aggregate();
    return { contentType: registry.contentType, body: await registry.metrics() };
  }

  /** The busiest ids over all workers, as of the last aggregation (metricsJson() refreshes it). */
  busiest(): BusyId[] {
    return this.#busiest;
  }

  /** The merged registry as JSON (what the status page reads). */
  async metricsJson(): Promise<MetricJson[]> {
    return (await (await this.#aggregate()).getMetricsAsJSON()) as unknown as MetricJson[];
  }

  async #aggregate() {
    const seq = this.#nextSeq++;
    const live = this.#slots.filter((slot) => slot.process !== undefined);
    const replies: object[][] = [];
    const busiest: BusyId[] = [];
    await new Promise<void>((resolve) => {
      const timer = setTimeout(finish, this.#metricsTimeoutMs);
      function finish() {
        clearTimeout(timer);
        resolve();
      }
      const scrape: PendingScrape = { expected: new Set(live.map((slot) => slot.index)), replies, busiest, done: finish };
      this.#scrapes.set(seq, scrape);
      const request: MetricsRequest = { type: "metrics-request", seq };
      for (const slot of live) {
        try {
          slot.process?.send(request);
        } catch {
          // The worker is exiting; its exit handler takes it off the expected set.
          scrape.expected.delete(slot.index);
        }
      }
      if (scrape.expected.size === 0) finish();
    });
    this.#scrapes.delete(seq);
    this.#busiest = mergeBusiest(busiest);
    return AggregatorRegistry.aggregate(replies);
  }

  /** Forwards `signal` to every worker and resolves once all have exited (SIGKILL after `timeoutMs`). */
  async stop(signal: NodeJS.Signals, timeoutMs: number): Promise<void> {
    this.#stopping = true;
    const children: Subprocess[] = [];
    for (const slot of this.#slots) {
      if (slot.restartTimer !== undefined) clearTimeout(slot.restartTimer);
      if (slot.process !== undefined) children.push(slot.process);
    }
    for (const child of children) child.kill(signal);
    const hardStop = setTimeout(() => {
      this.#logger.error("workers did not stop in time; killing them", { event: "shutdown.kill_workers" });
      for (const child of children) child.kill("SIGKILL");
    }, timeoutMs);
    await Promise.all(children.map((child) => child.exited));
    clearTimeout(hardStop);
  }
}

/** Runs the supervisor until SIGTERM/SIGINT, then exits 0 after the workers drained. */
export function runSupervisor(config: Config, logger: Logger, options: SupervisorOptions = {}): Supervisor {
  const supervisor = new Supervisor(config, logger, options);
  // The metrics port is bound before any worker is spawned: if another process holds it, the start
  // fails (exit 2) with no worker left behind.
  const metricsServer =
    config.metricsPort === 0
      ? undefined
      : startMetricsServer(
          config.metricsPort,
          config.host,
          () => supervisor.renderMetrics(),
          // Host-wide status page: the merged registry, and the busiest ids merged from every worker.
          createStatusHandler(
            () => supervisor.metricsJson(),
            () => supervisor.busiest(),
          ),
        );
  supervisor.start();
  logger.info(`turnomatic ${VERSION} supervisor started`, {
    event: "supervisor.start",
    version: VERSION,
    workers: config.workers,
    port: config.port,
    metricsPort: config.metricsPort,
    ...metricsUrls(config.host, config.metricsPort),
  });
  let stopping = false;
  const shutdown = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.info("stopping workers", { event: "supervisor.stop", signal });
    // Each worker waits drainDelayMs, then up to shutdownTimeoutMs; allow that plus a margin.
    await supervisor.stop(signal, config.drainDelayMs + config.shutdownTimeoutMs + 2000);
    await metricsServer?.stop(true);
    logger.info("supervisor stopped", { event: "supervisor.done", restarts: supervisor.restarts });
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  return supervisor;
}

/**
 * Merges the workers' busiest ids: each worker sees every number of an id (its reservations jump
 * over the other workers'), so per id the highest turno and the highest recent count are the
 * host's, not their sums.
 */
export function mergeBusiest(lists: readonly BusyId[]): BusyId[] {
  const byId = new Map<string, BusyId>();
  for (const entry of lists) {
    const seen = byId.get(entry.id);
    byId.set(
      entry.id,
      seen === undefined
        ? entry
        : { id: entry.id, turno: Math.max(seen.turno, entry.turno), recent: Math.max(seen.recent, entry.recent) },
    );
  }
  return [...byId.values()].sort((a, b) => b.recent - a.recent || b.turno - a.turno).slice(0, STATUS_BUSIEST);
}
