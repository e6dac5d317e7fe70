/**
 * The operator's interface: every option, its flag, its environment variable, its default and its
 * meaning, in one table. `--help` prints the table; values are validated when read, and a bad value
 * stops the start with a message that names the option.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ConfigError } from "./domain/errors.ts";
import { parseStoreUrl, redactStoreUrl, type StoreUrl, usesTls } from "./stores/store-url.ts";

/** Bad configuration, found at start (exit 2); defined in the domain so inner layers can raise it. */
export { ConfigError } from "./domain/errors.ts";

/**
 * One option: its flag, its environment variable, its default as the operator would type it ("" =
 * unset), the line `--help` and the README print, and the parser that turns the text into its value
 * (throwing ConfigError with the option's name). Config's type is derived from the parsers.
 */
interface OptionSpec<T> {
  readonly flag: string;
  readonly env: string;
  readonly fallback: string;
  readonly help: string;
  readonly parse: (raw: string, name: string) => T;
}

function integer(min: number, max: number) {
  return (raw: string, name: string): number => {
    const value = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new ConfigError(`${name} must be a whole number from ${min} to ${max}; got '${raw}'.`);
    }
    return value;
  };
}

function ratio(raw: string, name: string): number {
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value) || value < 0 || value > 1) {
    throw new ConfigError(`${name} must be a number from 0 to 1; got '${raw}'.`);
  }
  return value;
}

function boolean(raw: string, name: string): boolean {
  const value = raw.trim().toLowerCase();
  if (["1", "true", "yes", "on"].includes(value)) return true;
  if (["0", "false", "no", "off"].includes(value)) return false;
  throw new ConfigError(`${name} must be true or false; got '${raw}'.`);
}

function text(raw: string): string {
  return raw;
}

function waitReplicas(raw: string, name: string): number | "auto" {
  if (raw.trim() === "auto") return "auto";
  return integer(0, 16)(raw, name);
}

/** A path that must be readable now and hold PEM data (certificates, keys); "" = unset. */
function pemFile(raw: string, name: string): string | undefined {
  if (raw === "") return undefined;
  let content: string;
  try {
    content = readFileSync(raw, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    throw new ConfigError(`${name} names '${raw}', which cannot be read (${code}); give a readable PEM file.`);
  }
  if (!content.includes("-----BEGIN "))
    throw new ConfigError(`${name} names '${raw}', which is not a PEM file (no -----BEGIN line).`);
  return raw;
}

function workers(raw: string, name: string): number {
  if (raw.trim() === "auto") return navigator.hardwareConcurrency || 1;
  return integer(1, 256)(raw, name);
}

function adminToken(raw: string, name: string): string | undefined {
  if (raw === "") return undefined;
  if (raw.length < 16) throw new ConfigError(`${name} must be at least 16 characters (use a random secret).`);
  return raw;
}

function storeInit(raw: string, name: string): "auto" | "never" {
  if (raw === "auto" || raw === "never") return raw;
  throw new ConfigError(`${name} must be auto or never; got '${raw}'.`);
}

function logLevel(raw: string, name: string): "debug" | "info" | "warn" | "error" {
  if (raw === "debug" || raw === "info" || raw === "warn" || raw === "error") return raw;
  throw new ConfigError(`${name} must be debug, info, warn or error; got '${raw}'.`);
}

export const OPTION_TABLE = {
  port: { flag: "port", env: "PORT", fallback: "7017", help: "HTTP port of the turn API", parse: integer(0, 65535) },
  host: { flag: "host", env: "HOST", fallback: "0.0.0.0", help: "address to listen on", parse: text },
  store: {
    flag: "store",
    env: "TURNOMATIC_STORE",
    fallback: "sqlite:./data/turnomatic.db",
    help: "store URL: sqlite:<path>, memory:, redis://host:port, rediss://…, redis+cluster://h1:p1,h2:p2, redis+sentinel://h1:p1,h2:p2/<master-name>",
    parse: (raw: string, name: string): StoreUrl => parseStoreUrl(raw, name),
  },
  adminToken: {
    flag: "admin-token",
    env: "TURNOMATIC_ADMIN_TOKEN",
    fallback: "",
    help: "bearer token of the admin API (>= 16 characters); unset = admin API disabled",
    parse: adminToken,
  },
  metricsPort: {
    flag: "metrics-port",
    env: "METRICS_PORT",
    fallback: "9464",
    help: "port of /metrics; 0 = off",
    parse: integer(0, 65535),
  },
  workers: {
    flag: "workers",
    env: "TURNOMATIC_WORKERS",
    fallback: "1",
    help: "worker processes on the port, or 'auto' (one per core)",
    parse: workers,
  },
  deadlineMs: {
    flag: "deadline-ms",
    env: "TURNOMATIC_DEADLINE_MS",
    fallback: "1000",
    help: "longest wait for the store before a 503 (ms)",
    parse: integer(10, 60_000),
  },
  maxBatch: {
    flag: "max-batch",
    env: "TURNOMATIC_MAX_BATCH",
    fallback: "1024",
    help: "most numbers reserved in one store round trip",
    parse: integer(1, 1_000_000),
  },
  maxBatchCount: {
    flag: "max-batch-count",
    env: "TURNOMATIC_MAX_BATCH_COUNT",
    fallback: "1000",
    help: "largest count of a batch turn (POST /turno/:id?count=k); a larger one gets 400",
    parse: integer(1, 1_000_000),
  },
  maxWaitingPerId: {
    flag: "max-waiting-per-id",
    env: "TURNOMATIC_MAX_WAITING_PER_ID",
    fallback: "10000",
    help: "most requests waiting for one id; more get 503",
    parse: integer(1, 10_000_000),
  },
  maxWaiting: {
    flag: "max-waiting",
    env: "TURNOMATIC_MAX_WAITING",
    fallback: "50000",
    help: "most requests waiting in one process; more get 503",
    parse: integer(1, 10_000_000),
  },
  fencing: {
    flag: "fencing",
    env: "TURNOMATIC_FENCING",
    fallback: "true",
    help: "rollback fencing: never re-issue a number after the store went backwards",
    parse: boolean,
  },
  fenceMaxIds: {
    flag: "fence-max-ids",
    env: "TURNOMATIC_FENCE_MAX_IDS",
    fallback: "50000",
    help: "most ids whose rollback fence one process keeps (about 200 bytes each; least recently issued dropped first)",
    parse: integer(0, 100_000_000),
  },
  ledgerReports: {
    flag: "ledger-reports",
    env: "TURNOMATIC_LEDGER_REPORTS",
    fallback: "true",
    help: "report delivered numbers to the store's ledger (lost = issued - delivered)",
    parse: boolean,
  },
  ledgerFlushMs: {
    flag: "ledger-flush-ms",
    env: "TURNOMATIC_LEDGER_FLUSH_MS",
    fallback: "1000",
    help: "how often deliveries of quiet ids are reported to the ledger (ms); bounds the overcount after a crash",
    parse: integer(10, 600_000),
  },
  stateDir: {
    flag: "state-dir",
    env: "TURNOMATIC_STATE_DIR",
    fallback: "",
    help: "folder of this host's store witness files (how a restarted service recognizes a store that lost data); empty = beside the SQLite file, else ./data",
    parse: text,
  },
  storeInit: {
    flag: "store-init",
    env: "TURNOMATIC_STORE_INIT",
    fallback: "auto",
    help: "auto: initialize an empty store this host has no record of; never: refuse until an operator recovers or initializes it",
    parse: storeInit,
  },
  idempotencyTtlSeconds: {
    flag: "idempotency-ttl",
    env: "TURNOMATIC_IDEMPOTENCY_TTL",
    fallback: "86400",
    help: "lifetime of an Idempotency-Key (s)",
    parse: integer(1, 30 * 86_400),
  },
  redisKeyPrefix: {
    flag: "redis-prefix",
    env: "TURNOMATIC_REDIS_PREFIX",
    fallback: "turnomatic:",
    help: "prefix of every Redis key",
    parse: text,
  },
  redisWaitReplicas: {
    flag: "redis-wait-replicas",
    env: "TURNOMATIC_REDIS_WAIT_REPLICAS",
    fallback: "auto",
    help: "replicas that must acknowledge each reservation (WAIT); 0 = don't wait; auto = every replica Sentinel could promote for redis+sentinel:// (what survives a forced failover), else 0",
    parse: waitReplicas,
  },
  redisWaitTimeoutMs: {
    flag: "redis-wait-timeout-ms",
    env: "TURNOMATIC_REDIS_WAIT_TIMEOUT_MS",
    fallback: "500",
    help: "longest WAIT for replica acknowledgements (ms)",
    parse: integer(1, 60_000),
  },
  redisTlsCa: {
    flag: "redis-tls-ca",
    env: "TURNOMATIC_REDIS_TLS_CA",
    fallback: "",
    help: "PEM file of the CA(s) that signed the Redis TLS certificate (rediss*:// only); unset = the system's roots",
    parse: pemFile,
  },
  redisTlsCert: {
    flag: "redis-tls-cert",
    env: "TURNOMATIC_REDIS_TLS_CERT",
    fallback: "",
    help: "PEM client certificate for Redis mutual TLS (with --redis-tls-key)",
    parse: pemFile,
  },
  redisTlsKey: {
    flag: "redis-tls-key",
    env: "TURNOMATIC_REDIS_TLS_KEY",
    fallback: "",
    help: "PEM private key of --redis-tls-cert",
    parse: pemFile,
  },
  redisAllowEviction: {
    flag: "redis-allow-eviction",
    env: "TURNOMATIC_REDIS_ALLOW_EVICTION",
    fallback: "false",
    help: "start even if a Redis maxmemory-policy can evict counters (allkeys-*): evicted counters restart at 1",
    parse: boolean,
  },
  idleTimeoutSeconds: {
    flag: "idle-timeout",
    env: "TURNOMATIC_IDLE_TIMEOUT",
    fallback: "10",
    help: "close idle keep-alive connections after this many seconds (1-255)",
    parse: integer(1, 255),
  },
  maxBodyBytes: {
    flag: "max-body-bytes",
    env: "TURNOMATIC_MAX_BODY_BYTES",
    fallback: "1024",
    help: "largest accepted request body (bytes)",
    parse: integer(64, 1_048_576),
  },
  maxUrlLength: {
    flag: "max-url-length",
    env: "TURNOMATIC_MAX_URL_LENGTH",
    fallback: "2048",
    help: "longest accepted request target (characters)",
    parse: integer(64, 65_536),
  },
  drainDelayMs: {
    flag: "drain-delay-ms",
    env: "TURNOMATIC_DRAIN_DELAY_MS",
    fallback: "0",
    help: "on SIGTERM, serve on with /readyz failing this long (ms)",
    parse: integer(0, 600_000),
  },
  shutdownTimeoutMs: {
    flag: "shutdown-timeout-ms",
    env: "TURNOMATIC_SHUTDOWN_TIMEOUT_MS",
    fallback: "10000",
    help: "longest graceful shutdown (ms)",
    parse: integer(100, 600_000),
  },
  logLevel: {
    flag: "log-level",
    env: "TURNOMATIC_LOG_LEVEL",
    fallback: "info",
    help: "debug, info, warn or error",
    parse: logLevel,
  },
  accessLogSampleRatio: {
    flag: "access-log-sample",
    env: "TURNOMATIC_ACCESS_LOG_SAMPLE",
    fallback: "0",
    help: "fraction of requests written to the access log (0-1)",
    parse: ratio,
  },
} satisfies Record<string, OptionSpec<unknown>>;

/** The validated configuration: one field per option, typed by its parser. */
export type Config = { readonly [K in keyof typeof OPTION_TABLE]: ReturnType<(typeof OPTION_TABLE)[K]["parse"]> };

/** The options as a list (for --help, the README check and the service environment). */
export const OPTIONS: ReadonlyArray<OptionSpec<unknown> & { readonly key: keyof Config }> = Object.entries(OPTION_TABLE).map(
  ([key, option]) => ({ ...option, key: key as keyof Config }),
);

/** The text `--help` prints: every flag with its environment variable and default. */
export function helpText(): string {
  const lines = OPTIONS.map((option) => {
    const fallback = option.fallback === "" ? "unset" : `'${option.fallback}'`;
    return `  --${option.flag} <value>\n      env ${option.env}, default ${fallback}: ${option.help}`;
  });
  return [
    "Usage: turnomatic [options]",
    "",
    "Hands out unique, gap-free, ordered ticket numbers per id over HTTP.",
    "Each option is a flag or an environment variable (the flag wins).",
    "",
    ...lines,
    "  --help, -h\n      print this text and exit",
    "  --version, -v\n      print the version and exit",
  ].join("\n");
}

/** Reads and validates the configuration from flags and environment. Throws ConfigError. */
export function loadConfig(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): Config {
  const flagOptions = Object.fromEntries(OPTIONS.map((option) => [option.flag, { type: "string" as const }]));
  let flags: Record<string, string | boolean | undefined>;
  try {
    flags = parseArgs({ args: [...argv], options: flagOptions, allowPositionals: false, strict: true }).values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}. Run with --help for the list of options.`);
  }
  const entries = OPTIONS.map((option) => {
    const fromFlag = flags[option.flag];
    if (typeof fromFlag === "string") return [option.key, option.parse(fromFlag, `--${option.flag}`)];
    const fromEnv = env[option.env];
    if (fromEnv !== undefined) return [option.key, option.parse(fromEnv, option.env)];
    return [option.key, option.parse(option.fallback, `--${option.flag}`)];
  });
  // Each value came from its own option's parser, so the entries have Config's shape.
  const config = Object.fromEntries(entries) as Config;
  checkCombinations(config);
  return config;
}

/** Every check that involves more than one option, in one place. */
function checkCombinations(config: Config): void {
  if ((config.redisTlsCert === undefined) !== (config.redisTlsKey === undefined)) {
    throw new ConfigError(
      "--redis-tls-cert and --redis-tls-key go together (a client certificate needs its key); set both or neither.",
    );
  }
  const tlsFiles = config.redisTlsCa ?? config.redisTlsCert ?? config.redisTlsKey;
  if (tlsFiles !== undefined && !usesTls(config.store)) {
    throw new ConfigError(
      "--redis-tls-ca, --redis-tls-cert and --redis-tls-key apply to TLS connections only; use rediss://, rediss+cluster:// or rediss+sentinel:// in TURNOMATIC_STORE (or unset them).",
    );
  }
  if (config.store.kind === "redis-cluster" && config.redisWaitReplicas !== "auto" && config.redisWaitReplicas > 0) {
    throw new ConfigError(
      "--redis-wait-replicas is not supported with redis+cluster:// (a WAIT must follow each write on its primary's connection); set it to 0 or auto. Rollback fencing still guards each process.",
    );
  }
  if (config.workers > 1 && config.store.kind === "memory") {
    throw new ConfigError(
      "--workers > 1 needs a store the workers share; memory: lives in one process. Use sqlite:<path> or redis://, or --workers 1.",
    );
  }
  if (config.metricsPort !== 0 && config.metricsPort === config.port) {
    throw new ConfigError(`METRICS_PORT (${config.metricsPort}) must differ from PORT; use 0 to turn metrics off.`);
  }
}

/**
 * Replicas each reservation waits for. "auto" is "all" for Sentinel: every replica Sentinel could
 * promote (a forced failover must not lose issued numbers: replica-ack.ts LiveReplicaCount), and
 * 0 for every other store.
 */
export function waitReplicasOf(config: Pick<Config, "store" | "redisWaitReplicas">): number | "all" {
  if (config.redisWaitReplicas !== "auto") return config.redisWaitReplicas;
  return config.store.kind === "redis-sentinel" ? "all" : 0;
}

/** The configuration as it may be logged: secrets replaced, passwords cut out of URLs. */
export function redactConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    adminToken: config.adminToken === undefined ? undefined : "<redacted>",
    store: redactStoreUrl(config.store.text),
  };
}
