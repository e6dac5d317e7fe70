/**
 * Composition root: read the configuration, build the store, the coalescer and the HTTP server,
 * and shut down gracefully on SIGTERM/SIGINT.
 */
import { Coalescer } from "./allocation/coalescer.ts";
import { runSupervisor } from "./cluster/supervisor.ts";
import { attachWorkerIpc, workerId } from "./cluster/worker-ipc.ts";
import { ConfigError, type Config, helpText, loadConfig, redactConfig } from "./config.ts";
import { createApp } from "./http/app.ts";
import { LOW_OPEN_FILE_LIMIT, openFileLimit } from "./http/open-file-limit.ts";
import { startServer } from "./http/server.ts";
import { createInstruments, storeStateLogger } from "./observability/instrument.ts";
import { registerLedgerMetrics } from "./observability/ledger-metrics.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { renderLocalMetrics, startMetricsServer } from "./observability/metrics-server.ts";
import { recordDurability } from "./observability/store-metrics.ts";
import { dirname } from "node:path";
import type { CounterStore } from "./domain/counter-store.ts";
import { createStore } from "./stores/create-store.ts";
import { StoreGuard } from "./stores/store-guard.ts";
import { Witness } from "./stores/witness.ts";

export async function runService(config: Config, logger: Logger): Promise<void> {
  const inner = createStore({
    url: config.store,
    redisKeyPrefix: config.redisKeyPrefix,
    commandTimeoutMs: config.deadlineMs,
    redisWaitReplicas: config.redisWaitReplicas,
    redisWaitTimeoutMs: config.redisWaitTimeoutMs,
    onStateChange: storeStateLogger(logger, config.store),
  });
  const guard = guardStore(inner, config, logger);
  const store = guard;
  await guard.start();
  const durabilityWarnings = await store.durabilityWarnings();
  for (const warning of durabilityWarnings) logger.warn(warning, { event: "store.durability" });
  recordDurability(store.kind, durabilityWarnings);
  const instruments = createInstruments({
    logger,
    metrics: config.metricsPort !== 0,
    env: process.env,
    accessLogSampleRatio: config.accessLogSampleRatio,
    storeKind: store.kind,
    waiting: () => coalescer.waiting,
    ping: () => store.ping(),
  });
  const coalescer = new Coalescer(
    store,
    {
      deadlineMs: config.deadlineMs,
      maxBatch: config.maxBatch,
      maxWaitingPerId: config.maxWaitingPerId,
      maxWaiting: config.maxWaiting,
      fencing: config.fencing,
      fenceMaxIds: config.fenceMaxIds,
      ledgerReports: config.ledgerReports,
      ledgerFlushMs: config.ledgerFlushMs,
    },
    instruments.observer,
    config.idempotencyTtlSeconds,
  );
  if (config.metricsPort !== 0) registerLedgerMetrics({ totals: () => store.totals(), guard: () => guard.state, coalescer });
  const app = createApp({
    coalescer,
    store,
    recover: (floor) => guard.recover(floor),
    adminToken: config.adminToken,
    deadlineMs: config.deadlineMs,
    maxUrlLength: config.maxUrlLength,
    maxBodyBytes: config.maxBodyBytes,
    onInternalError: (error) => logger.error("internal error", { event: "http.internal_error", error }),
    ...instruments.appHooks,
  });
  const server = startServer(app, {
    port: config.port,
    host: config.host,
    reusePort: config.workers > 1,
    idleTimeoutSeconds: config.idleTimeoutSeconds,
    maxBodyBytes: config.maxBodyBytes,
  });
  // A worker never serves /metrics itself: its supervisor aggregates every worker's registry.
  const worker = workerId();
  const metricsServer =
    config.metricsPort === 0 || worker !== undefined
      ? undefined
      : startMetricsServer(config.metricsPort, config.host, renderLocalMetrics, instruments.statusHandler);
  logger.info("turnomatic listening", {
    event: "start",
    url: `http://${config.host}:${server.port}`,
    store: store.kind,
    config: redactConfig(config),
  });
  const fileLimit = openFileLimit();
  if (fileLimit !== undefined && fileLimit < LOW_OPEN_FILE_LIMIT) {
    logger.warn(
      `open-file limit is ${fileLimit}: each connection takes one, and out of descriptors the server stalls new clients and spins a core; raise it (systemd LimitNOFILE, ulimit -n) to at least ${LOW_OPEN_FILE_LIMIT}`,
      { event: "start.open_file_limit", limit: fileLimit },
    );
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info("draining", { event: "shutdown.start", signal, drainDelayMs: config.drainDelayMs });
    app.startDraining();
    const hardStop = setTimeout(() => {
      logger.error("graceful shutdown timed out; exiting", { event: "shutdown.timeout", waiting: coalescer.waiting });
      process.exit(1);
    }, config.drainDelayMs + config.shutdownTimeoutMs);
    if (config.drainDelayMs > 0) await Bun.sleep(config.drainDelayMs);
    await server.stop(false);
    await coalescer.close();
    await store.close();
    await instruments.close();
    await metricsServer?.stop(true);
    clearTimeout(hardStop);
    logger.info("stopped", {
      event: "shutdown.done",
      issued: coalescer.stats.numbersIssued,
      abandoned: coalescer.stats.abandoned,
    });
    process.exit(0);
  };
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  process.on("SIGINT", () => void shutdown("SIGINT"));
  if (worker !== undefined) attachWorkerIpc(() => void shutdown("supervisor-gone"), instruments.busiest);
}

/**
 * Wraps a store in the guard that refuses a store that lost data (store-guard.ts), with this host's
 * witness beside it, and logs each change of the guard's state once.
 */
function guardStore(store: CounterStore, config: Config, logger: Logger): StoreGuard {
  const witness = store.durable
    ? new Witness({
        dir: config.stateDir !== "" ? config.stateDir : defaultStateDir(config.store),
        store: `${redactConfig(config).store} ${config.redisKeyPrefix}`,
        slot: String(workerId() ?? "main"),
      })
    : undefined;
  return new StoreGuard(store, {
    witness,
    init: config.storeInit,
    onChange: (state, previous) => {
      if (state.status === "ok") {
        const marker = state.marker;
        logger.info(`store accepted: marker ${marker.uid}, generation ${marker.generation}`, {
          event: previous.status === "refusing" ? "store.recovered" : "store.accepted",
          uid: marker.uid,
          generation: marker.generation,
        });
      } else if (state.status === "refusing") {
        logger.error(`refusing every turn: ${state.error.message}`, { event: "store.refusing", code: state.error.code });
      } else {
        logger.warn(`store not verified yet, answering 503 until it is: ${state.error.message}`, {
          event: "store.unverified",
          code: state.error.code,
        });
      }
    },
  });
}

/** Witness files live beside a SQLite file (they belong to it), else in ./data. */
function defaultStateDir(storeUrl: string): string {
  if (storeUrl.startsWith("sqlite:")) return dirname(storeUrl.slice("sqlite:".length).replace(/^\/\/(?=\/)/, ""));
  return "./data";
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${helpText()}\n`);
    return;
  }
  let config: Config;
  try {
    config = loadConfig(argv, process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`turnomatic: invalid configuration: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const worker = workerId();
  const logger = createLogger(config.logLevel, {
    service: "turnomatic",
    pid: process.pid,
    ...(worker === undefined ? {} : { worker }),
  });
  try {
    if (config.workers > 1 && worker === undefined) runSupervisor(config, logger);
    else await runService(config, logger);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    logger.error(`failed to start: ${message}`, { event: "start.failed", error });
    process.exit(error instanceof ConfigError ? 2 : 1);
  }
}

if (import.meta.main) await main();
