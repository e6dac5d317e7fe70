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
import { createInstruments, storeStateLogger, VERSION } from "./observability/instrument.ts";
import { createLogger, type Logger } from "./observability/logger.ts";
import { MetricsPortInUseError, metricsUrls, renderLocalMetrics, startMetricsServer } from "./observability/metrics-server.ts";
import { recordDurability, storeWriteObserver } from "./observability/store-metrics.ts";
import { readTracingSettings, TracingConfigError } from "./observability/trace-settings.ts";
import { createStore } from "./stores/create-store.ts";

export async function runService(config: Config, logger: Logger): Promise<void> {
  const store = createStore({
    url: config.store,
    redisKeyPrefix: config.redisKeyPrefix,
    commandTimeoutMs: config.deadlineMs,
    redisWaitReplicas: config.redisWaitReplicas,
    redisWaitTimeoutMs: config.redisWaitTimeoutMs,
    onStateChange: storeStateLogger(logger, config.store),
    onWriteHealth: storeWriteObserver(logger),
  });
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
    },
    instruments.observer,
    config.idempotencyTtlSeconds,
  );
  const app = createApp({
    coalescer,
    store,
    adminToken: config.adminToken,
    deadlineMs: config.deadlineMs,
    maxUrlLength: config.maxUrlLength,
    maxBodyBytes: config.maxBodyBytes,
    onInternalError: (error) => logger.error("internal error", { event: "http.internal_error", error }),
    ...instruments.appHooks,
  });
  // A worker never serves /metrics itself: its supervisor aggregates every worker's registry. Bound
  // before the API so that a metrics port held by another process stops the start (exit 2).
  const worker = workerId();
  const metricsServer =
    config.metricsPort === 0 || worker !== undefined
      ? undefined
      : startMetricsServer(config.metricsPort, config.host, renderLocalMetrics, instruments.statusHandler);
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
  if (worker !== undefined) attachWorkerIpc(() => void shutdown("supervisor-gone"), instruments.busiest);
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
    if (error instanceof ConfigError || error instanceof TracingConfigError) {
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
    process.exit(error instanceof ConfigError || error instanceof MetricsPortInUseError ? 2 : 1);
  }
}

if (import.meta.main) await main();
