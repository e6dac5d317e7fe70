/**
 * The operator's interface: every option, its flag, its environment variable, its default and its
 * meaning, in one table. `--help` prints the table; values are validated when read, and a bad value
 * stops the start with a message that names the option.
 */
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { ConfigError } from "./domain/errors.ts";

export interface Config {
  /** HTTP port of the turn API. Default 7017. */
  readonly port: number;
  /** Address to listen on. Default 0.0.0.0. */
  readonly host: string;
  /** Store URL: sqlite:<path>, memory:, redis://, rediss://, redis+cluster://, redis+sentinel://. */
  readonly store: string;
  /** Bearer token of the admin API; undefined disables it (404). */
  readonly adminToken: string | undefined;
  /** Port of /metrics, apart from the API; 0 disables it. Default 9464. */
  readonly metricsPort: number;
  /** Worker processes sharing the port ("auto" = one per core). Default 1. */
  readonly workers: number;
  /** Longest a turn request waits for the store before a 503 (ms). Default 1000. */
  readonly deadlineMs: number;
  /** Most numbers reserved in one store round trip. Default 1024. */
  readonly maxBatch: number;
  /** Most requests waiting for one id in one process. Default 10000. */
  readonly maxWaitingPerId: number;
  /** Most requests waiting in one process. Default 50000. */
  readonly maxWaiting: number;
  /** Rollback fencing (never re-issue after the store went backwards). Default on. */
  readonly fencing: boolean;
  /** Most ids whose rollback fence a process keeps (least recently issued dropped). Default 50000. */
  readonly fenceMaxIds: number;
  /** Report delivered numbers to the store's ledger. Default on. */
  readonly ledgerReports: boolean;
  /** How often deliveries of quiet ids are reported to the ledger (ms). Default 1000. */
  readonly ledgerFlushMs: number;
  /** Folder of this host's store witness files; "" = beside the SQLite file, else ./data. Default "". */
  readonly stateDir: string;
  /** "auto": initialize an empty store this host has no record of; "never": an operator does. Default auto. */
  readonly storeInit: "auto" | "never";
  /** Lifetime of an Idempotency-Key (s). Default 86400. */
  readonly idempotencyTtlSeconds: number;
  /** Prefix of every Redis key. Default "turnomatic:". */
  readonly redisKeyPrefix: string;
  /**
   * Replicas that must acknowledge a reservation (Redis WAIT); 0 = no WAIT. Default "auto": 1 for
   * redis+sentinel:// (a failover must not lose issued numbers), 0 for every other store.
   */
  readonly redisWaitReplicas: number | "auto";
  /** Longest WAIT for replica acknowledgements (ms). Default 500. */
  readonly redisWaitTimeoutMs: number;
  /** PEM CA bundle trusted for the Redis TLS certificate (rediss*:// only). Default unset: Node's roots. */
  readonly redisTlsCa: string | undefined;
  /** PEM client certificate for Redis mutual TLS; needs redisTlsKey. Default unset. */
  readonly redisTlsCert: string | undefined;
  /** PEM private key of redisTlsCert. Default unset. */
  readonly redisTlsKey: string | undefined;
  /** Start even when a Redis maxmemory-policy can evict counters (allkeys-*). Default false. */
  readonly redisAllowEviction: boolean;
  /** Idle keep-alive connections are closed after this many seconds (1-255). Default 10. */
  readonly idleTimeoutSeconds: number;
  /** Largest accepted request body (bytes). Default 1024. */
  readonly maxBodyBytes: number;
  /** Longest accepted request target (characters). Default 2048. */
  readonly maxUrlLength: number;
  /** On SIGTERM, keep serving with /readyz failing this long so load balancers move away (ms). Default 0. */
  readonly drainDelayMs: number;
  /** Longest graceful shutdown before in-flight requests are cut (ms). Default 10000. */
  readonly shutdownTimeoutMs: number;
  /** Log level: debug, info, warn, error. Default info. */
  readonly logLevel: "debug" | "info" | "warn" | "error";
  /** Fraction of requests written to the access log (0 = none). Default 0. */
  readonly accessLogSampleRatio: number;
}

/** Bad configuration, found at start (exit 2); defined in the domain so inner layers can raise it. */
export { ConfigError } from "./domain/errors.ts";

interface OptionSpec {
  readonly key: keyof Config;
  readonly flag: string;
  readonly env: string;
  readonly fallback: string | undefined;
  readonly help: string;
  readonly parse: (raw: string, name: string) => Config[keyof Config];
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

const STORE_SCHEMES = [
  "sqlite:",
  "memory:",
  "redis://",
  "rediss://",
  "redis+cluster://",
  "rediss+cluster://",
  "redis+sentinel://",
  "rediss+sentinel://",
];

function storeUrl(raw: string, name: string): string {
  if (!STORE_SCHEMES.some((scheme) => raw.startsWith(scheme)) || raw === "sqlite:") {
    throw new ConfigError(
      `${name} must start with one of ${STORE_SCHEMES.join(", ")} (e.g. sqlite:./data/turnomatic.db or redis://127.0.0.1:6379); got '${raw}'.`,
    );
  }
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

function storeInit(raw: string, name: string): Config["storeInit"] {
  if (raw === "auto" || raw === "never") return raw;
  throw new ConfigError(`${name} must be auto or never; got '${raw}'.`);
}

function logLevel(raw: string, name: string): Config["logLevel"] {
  if (raw === "debug" || raw === "info" || raw === "warn" || raw === "error") return raw;
  throw new ConfigError(`${name} must be debug, info, warn or error; got '${raw}'.`);
}

export const OPTIONS: readonly OptionSpec[] = [
  { key: "port", flag: "port", env: "PORT", fallback: "7017", help: "HTTP port of the turn API", parse: integer(0, 65535) },
  { key: "host", flag: "host", env: "HOST", fallback: "0.0.0.0", help: "address to listen on", parse: text },
  {
    key: "store",
    flag: "store",
    env: "TURNOMATIC_STORE",
    fallback: "sqlite:./data/turnomatic.db",
    help: "store URL: sqlite:<path>, memory:, redis://host:port, rediss://…, redis+cluster://h1:p1,h2:p2, redis+sentinel://h1:p1,h2:p2/<master-name>",
    parse: storeUrl,
  },
  {
    key: "adminToken",
    flag: "admin-token",
    env: "TURNOMATIC_ADMIN_TOKEN",
    fallback: undefined,
    help: "bearer token of the admin API (>= 16 characters); unset = admin API disabled",
    parse: adminToken,
  },
  {
    key: "metricsPort",
    flag: "metrics-port",
    env: "METRICS_PORT",
    fallback: "9464",
    help: "port of /metrics; 0 = off",
    parse: integer(0, 65535),
  },
  {
    key: "workers",
    flag: "workers",
    env: "TURNOMATIC_WORKERS",
    fallback: "1",
    help: "worker processes on the port, or 'auto' (one per core)",
    parse: workers,
  },
  {
    key: "deadlineMs",
    flag: "deadline-ms",
    env: "TURNOMATIC_DEADLINE_MS",
    fallback: "1000",
    help: "longest wait for the store before a 503 (ms)",
    parse: integer(10, 60_000),
  },
  {
    key: "maxBatch",
    flag: "max-batch",
    env: "TURNOMATIC_MAX_BATCH",
    fallback: "1024",
    help: "most numbers reserved in one store round trip",
    parse: integer(1, 1_000_000),
  },
  {
    key: "maxWaitingPerId",
    flag: "max-waiting-per-id",
    env: "TURNOMATIC_MAX_WAITING_PER_ID",
    fallback: "10000",
    help: "most requests waiting for one id; more get 503",
    parse: integer(1, 10_000_000),
  },
  {
    key: "maxWaiting",
    flag: "max-waiting",
    env: "TURNOMATIC_MAX_WAITING",
    fallback: "50000",
    help: "most requests waiting in one process; more get 503",
    parse: integer(1, 10_000_000),
  },
  {
    key: "fencing",
    flag: "fencing",
    env: "TURNOMATIC_FENCING",
    fallback: "true",
    help: "rollback fencing: never re-issue a number after the store went backwards",
    parse: boolean,
  },
  {
    key: "fenceMaxIds",
    flag: "fence-max-ids",
    env: "TURNOMATIC_FENCE_MAX_IDS",
    fallback: "50000",
    help: "most ids whose rollback fence one process keeps (about 200 bytes each; least recently issued dropped first)",
    parse: integer(0, 100_000_000),
  },
  {
    key: "ledgerReports",
    flag: "ledger-reports",
    env: "TURNOMATIC_LEDGER_REPORTS",
    fallback: "true",
    help: "report delivered numbers to the store's ledger (lost = issued - delivered)",
    parse: boolean,
  },
  {
    key: "ledgerFlushMs",
    flag: "ledger-flush-ms",
    env: "TURNOMATIC_LEDGER_FLUSH_MS",
    fallback: "1000",
    help: "how often deliveries of quiet ids are reported to the ledger (ms); bounds the overcount after a crash",
    parse: integer(10, 600_000),
  },
  {
    key: "stateDir",
    flag: "state-dir",
    env: "TURNOMATIC_STATE_DIR",
    fallback: "",
    help: "folder of this host's store witness files (how a restarted service recognizes a store that lost data); empty = beside the SQLite file, else ./data",
    parse: text,
  },
  {
    key: "storeInit",
    flag: "store-init",
    env: "TURNOMATIC_STORE_INIT",
    fallback: "auto",
    help: "auto: initialize an empty store this host has no record of; never: refuse until an operator recovers or initializes it",
    parse: storeInit,
  },
  {
    key: "idempotencyTtlSeconds",
    flag: "idempotency-ttl",
    env: "TURNOMATIC_IDEMPOTENCY_TTL",
    fallback: "86400",
    help: "lifetime of an Idempotency-Key (s)",
    parse: integer(1, 30 * 86_400),
  },
  {
    key: "redisKeyPrefix",
    flag: "redis-prefix",
    env: "TURNOMATIC_REDIS_PREFIX",
    fallback: "turnomatic:",
    help: "prefix of every Redis key",
    parse: text,
  },
  {
    key: "redisWaitReplicas",
    flag: "redis-wait-replicas",
    env: "TURNOMATIC_REDIS_WAIT_REPLICAS",
    fallback: "auto",
    help: "replicas that must acknowledge each reservation (WAIT); 0 = don't wait; auto = 1 for redis+sentinel://, else 0",
    parse: waitReplicas,
  },
  {
    key: "redisWaitTimeoutMs",
    flag: "redis-wait-timeout-ms",
    env: "TURNOMATIC_REDIS_WAIT_TIMEOUT_MS",
    fallback: "500",
    help: "longest WAIT for replica acknowledgements (ms)",
    parse: integer(1, 60_000),
  },
  {
    key: "redisTlsCa",
    flag: "redis-tls-ca",
    env: "TURNOMATIC_REDIS_TLS_CA",
    fallback: undefined,
    help: "PEM file of the CA(s) that signed the Redis TLS certificate (rediss*:// only); unset = the system's roots",
    parse: pemFile,
  },
  {
    key: "redisTlsCert",
    flag: "redis-tls-cert",
    env: "TURNOMATIC_REDIS_TLS_CERT",
    fallback: undefined,
    help: "PEM client certificate for Redis mutual TLS (with --redis-tls-key)",
    parse: pemFile,
  },
  {
    key: "redisTlsKey",
    flag: "redis-tls-key",
    env: "TURNOMATIC_REDIS_TLS_KEY",
    fallback: undefined,
    help: "PEM private key of --redis-tls-cert",
    parse: pemFile,
  },
  {
    key: "redisAllowEviction",
    flag: "redis-allow-eviction",
    env: "TURNOMATIC_REDIS_ALLOW_EVICTION",
    fallback: "false",
    help: "start even if a Redis maxmemory-policy can evict counters (allkeys-*): evicted counters restart at 1",
    parse: boolean,
  },
  {
    key: "idleTimeoutSeconds",
    flag: "idle-timeout",
    env: "TURNOMATIC_IDLE_TIMEOUT",
    fallback: "10",
    help: "close idle keep-alive connections after this many seconds (1-255)",
    parse: integer(1, 255),
  },
  {
    key: "maxBodyBytes",
    flag: "max-body-bytes",
    env: "TURNOMATIC_MAX_BODY_BYTES",
    fallback: "1024",
    help: "largest accepted request body (bytes)",
    parse: integer(64, 1_048_576),
  },
  {
    key: "maxUrlLength",
    flag: "max-url-length",
    env: "TURNOMATIC_MAX_URL_LENGTH",
    fallback: "2048",
    help: "longest accepted request target (characters)",
    parse: integer(64, 65_536),
  },
  {
    key: "drainDelayMs",
    flag: "drain-delay-ms",
    env: "TURNOMATIC_DRAIN_DELAY_MS",
    fallback: "0",
    help: "on SIGTERM, serve on with /readyz failing this long (ms)",
    parse: integer(0, 600_000),
  },
  {
    key: "shutdownTimeoutMs",
    flag: "shutdown-timeout-ms",
    env: "TURNOMATIC_SHUTDOWN_TIMEOUT_MS",
    fallback: "10000",
    help: "longest graceful shutdown (ms)",
    parse: integer(100, 600_000),
  },
  {
    key: "logLevel",
    flag: "log-level",
    env: "TURNOMATIC_LOG_LEVEL",
    fallback: "info",
    help: "debug, info, warn or error",
    parse: logLevel,
  },
  {
    key: "accessLogSampleRatio",
    flag: "access-log-sample",
    env: "TURNOMATIC_ACCESS_LOG_SAMPLE",
    fallback: "0",
    help: "fraction of requests written to the access log (0-1)",
    parse: ratio,
  },
];

/** The text `--help` prints: every flag with its environment variable and default. */
export function helpText(): string {
  const lines = OPTIONS.map((option) => {
    const fallback = option.fallback === undefined ? "unset" : `'${option.fallback}'`;
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
  const config: Record<string, unknown> = {};
  for (const option of OPTIONS) {
    const fromFlag = flags[option.flag];
    const raw = typeof fromFlag === "string" ? fromFlag : (env[option.env] ?? option.fallback);
    const name =
      typeof fromFlag === "string" ? `--${option.flag}` : env[option.env] !== undefined ? option.env : `--${option.flag}`;
    config[option.key] = raw === undefined ? undefined : option.parse(raw, name);
  }
  const result = config as unknown as Config;
  if ((result.redisTlsCert === undefined) !== (result.redisTlsKey === undefined)) {
    throw new ConfigError(
      "--redis-tls-cert and --redis-tls-key go together (a client certificate needs its key); set both or neither.",
    );
  }
  if (result.metricsPort !== 0 && result.metricsPort === result.port) {
    throw new ConfigError(`METRICS_PORT (${result.metricsPort}) must differ from PORT; use 0 to turn metrics off.`);
  }
  return result;
}

/** The configuration as it may be logged: secrets replaced, passwords cut out of URLs. */
export function redactConfig(config: Config): Record<string, unknown> {
  return {
    ...config,
    adminToken: config.adminToken === undefined ? undefined : "<redacted>",
    store: config.store.replace(/\/\/([^@/]*)@/, "//<redacted>@"),
  };
}
