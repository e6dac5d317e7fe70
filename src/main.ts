/**
 * Composition root: read the configuration, build the store, the coalescer and the HTTP server,
 * and shut down gracefully on SIGTERM/SIGINT.
 */
import type { CounterStore } from "./domain/counter-store.ts";
import { Coalescer } from "./allocation/coalescer.ts";
import { runSupervisor } from "./cluster/supervisor.ts";
import { attachWorkerIpc, workerId } from "./cluster/worker-ipc.ts";
import { type Config, helpText, loadConfig, redactConfig, waitReplicasOf } from "./config.ts";
import { StartError } from "./domain/errors.ts";
import { createApp } from "./http/app.ts";
import { LOW_OPEN_FILE_LIMIT, openFileLimit } from "./http/open-file-limit.ts";
import { startServer } from "./http/server.ts";
import { createInstruments, storeStateLogger, VERSION } from "./observability/instrument.ts";
import { registerLedgerMetrics } from "./observability/ledger-metrics.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { localMetricsRenderer, metricsUrls, startMetricsServer } from "./observability/metrics-server.ts";
import { createStoreMetrics, type StoreMetrics } from "./observability/store-metrics.ts";
import { readTracingSettings } from "./observability/trace-settings.ts";
import { dirname } from "node:path";
import { Registry } from "prom-client";
import { checkStoreAtStart, createStore } from "./stores/create-store.ts";
import { StoreGuard } from "./stores/store-guard.ts";
import type { StoreUrl } from "./stores/store-url.ts";
import { Witness } from "./stores/witness.ts";

export async function runService(config: Config, logger: Logger): Promise<void> {
  // The process's one registry: every metric registers here, /metrics and the supervisor read it.
  const registry = new Registry();
  const storeMetrics = createStoreMetrics(registry);
  const inner = createStore({
    url: config.store,
    redisKeyPrefix: config.redisKeyPrefix,
    commandTimeoutMs: config.deadlineMs,
    redisWaitReplicas: waitReplicasOf(config),
    redisWaitTimeoutMs: config.redisWaitTimeoutMs,
    onStateChange: storeStateLogger(logger, config.store.text),
    onWriteHealth: storeMetrics.writeObserver(logger),
    redisTls: { caFile: config.redisTlsCa, certFile: config.redisTlsCert, keyFile: config.redisTlsKey },
    redisAllowEviction: config.redisAllowEviction,
  });
  await runStoreChecks(inner, logger, storeMetrics, Math.max(2000, 2 * config.deadlineMs));
  const guard = guardStore(inner, config, logger);
  const store = guard;
  await guard.start();
  const instruments = createInstruments({
    logger,
    registry,
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
    config.idempotencyTtlSeconds,
  );
  guard.onNewLife(() => coalescer.forgetFences());
  if (config.metricsPort !== 0)
    registerLedgerMetrics(registry, { totals: () => store.totals(), guard: () => guard.state, coalescer });
  const app = createApp({
    coalescer,
    store,
    recover: (floor) => guard.recover(floor),
    adminToken: config.adminToken,
    deadlineMs: config.deadlineMs,
    maxBatchCount: config.maxBatchCount,
    maxUrlLength: config.maxUrlLength,
    maxBodyBytes: config.maxBodyBytes,
    ...instruments.appHooks,
  });
  // A worker never serves /metrics itself: its supervisor aggregates every worker's registry. Bound
  // before the API so that a metrics port held by another process stops the start (exit 2).
  const worker = workerId();
  const metricsServer =
    config.metricsPort === 0 || worker !== undefined
      ? undefined
      : startMetricsServer(config.metricsPort, config.host, localMetricsRenderer(registry), instruments.statusHandler);
  const server = startServer(app, {
    port: config.port,
    host: config.host,
    reusePort: config.workers > 1,
    idleTimeoutSeconds: config.idleTimeoutSeconds,
    maxBodyBytes: config.maxBodyBytes,
  });
  // The operator's first line: what runs, where to send turns, where to scrape and look. A worker
  // names the supervisor's host-wide metrics port.
  logger.info(`turnomatic ${VERSION} listening`, {
    event: "start",
    version: VERSION,
    url: `http://${config.host}:${server.port}`,
    ...metricsUrls(config.host, config.metricsPort),
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
  if (worker !== undefined) attachWorkerIpc(registry, () => void shutdown("supervisor-gone"), instruments.busiest);
}

/**
 * The store's start-up checks (persistence, eviction), logged and published as the durability gauge.
 * A store unreachable at start is said to be so (not "settings unreadable"), the service serves 503
 * until it connects, and the checks run then; a refusal found then stops the process (exit 2), as
 * it would have at start.
 */
async function runStoreChecks(store: CounterStore, logger: Logger, metrics: StoreMetrics, waitMs: number): Promise<void> {
  const check = await checkStoreAtStart(store, waitMs);
  if (check.state === "unreachable") {
    logger.warn(
      `store unavailable at start: ${check.cause}. Serving 503 on turns and on /readyz until it connects; the persistence and eviction checks run then`,
      { event: "store.unavailable", store: store.kind },
    );
    metrics.recordDurability(store.kind, "unknown");
    void check.connected.then(async () => {
      logger.info("store connected after being unavailable at start; turns are served", {
        event: "store.connected",
        store: store.kind,
      });
      try {
        await runStoreChecks(store, logger, metrics, waitMs);
      } catch (error) {
        logger.error(`store refused: ${(error as Error).message}`, { event: "start.failed", error });
        process.exit(error instanceof StartError ? 2 : 1);
      }
    });
    return;
  }
  for (const warning of check.warnings) logger.warn(warning, { event: "store.durability" });
  for (const note of check.notes) logger.info(note, { event: "store.durability" });
  metrics.recordDurability(store.kind, check.state);
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
        onWriteError: (error) => {
          if (error === undefined) logger.info("store witness written again", { event: "store.witness_ok" });
          else
            logger.error(
              `cannot write the store witness (${error.message}): a restarted process will not recognize a store that lost data; give --state-dir a writable folder`,
              { event: "store.witness_unwritable" },
            );
        },
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
function defaultStateDir(store: StoreUrl): string {
  return store.kind === "sqlite" ? dirname(store.path) : "./data";
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    process.stdout.write(`${helpText()}\n`);
    return;
  }
  if (argv.includes("--version") || argv.includes("-v")) {
    process.stdout.write(`turnomatic ${VERSION}\n`);
    return;
  }
  let config: Config;
  try {
    config = loadConfig(argv, process.env);
    // Checked here, not only in each worker: a supervisor would restart a refused worker forever.
    readTracingSettings(process.env);
  } catch (error) {
    if (error instanceof StartError) {
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
    process.exit(error instanceof StartError ? 2 : 1);
  }
}

if (import.meta.main) await main();
