/**
 * Renders deploy/haproxy/haproxy.cfg.template for a list of app hosts. Used by the cluster tool and
 * runnable on its own (see USAGE below, or `--help`).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseCommandLine, UsageError } from "../../bench/toolkit/cli.ts";

export const HAPROXY_TEMPLATE = join(import.meta.dir, "../../deploy/haproxy/haproxy.cfg.template");

/**
 * How HAProxy treats connections.
 * - "keepalive" (default): keep-alive to clients, and server connections pooled and reused
 *   (`http-reuse safe`). A GET that dies with an app host may be replayed by the client on its own
 *   (Bun's fetch, browsers, curl do): the number the dead host took is then lost without an error at
 *   the client, and counted in the store's ledger (`lost`, GET /admin/turno/:id/ledger) instead.
 * - "strict": one request per client connection (`option httpclose`) and a fresh server connection
 *   per request (`option http-server-close`): every failure reaches the client as a 502/503/504 and
 *   nothing is replayed, at about 2x the CPU per request of the whole path (docs/reports/scalability.md section 1a).
 */
export const LB_MODES = ["keepalive", "strict"] as const;
export type LbMode = (typeof LB_MODES)[number];

export function parseLbMode(raw: string, option = "--lb-mode"): LbMode {
  if ((LB_MODES as readonly string[]).includes(raw)) return raw as LbMode;
  throw new RangeError(`${option} must be ${LB_MODES.join(" or ")}; got '${raw}'.`);
}

export interface AppServer {
  /** Server name in HAProxy (stats, logs): the host's name, e.g. app1. */
  readonly name: string;
  readonly address: string;
  readonly port: number;
  /**
   * Declared but in maintenance (HAProxy's `disabled`): a slot the autoscaler fills at run time over
   * the admin socket (`set server ... addr`, `state ready`), so adding a host needs no reload. Default false.
   */
  readonly disabled?: boolean;
}

export interface HaproxyConfigOptions {
  readonly servers: readonly AppServer[];
  /** Public listener. Default "0.0.0.0:80". */
  readonly bind?: string;
  /** Listener of /metrics (Prometheus exporter) and /stats. Default "0.0.0.0:8404". */
  readonly statsBind?: string;
  /** Admin socket path. Default /run/haproxy-turnomatic.sock. */
  readonly statsSocket?: string;
  /** Health check interval (ms). Default 500. */
  readonly checkInterMs?: number;
  /** Failed checks before a server is marked down. Default 2. */
  readonly checkFall?: number;
  /** Passed checks before a server is back. Default 2. */
  readonly checkRise?: number;
  /** Connections HAProxy accepts in all. Default 4096. */
  readonly maxconn?: number;
  /** Concurrent requests per app host; more wait in HAProxy's queue. Default 512. */
  readonly serverMaxconn?: number;
  /** Connection handling, see LbMode. Default "keepalive". */
  readonly lbMode?: LbMode;
  /** HAProxy threads (`nbthread`). Default: HAProxy's own (one per CPU it may run on). */
  readonly threads?: number;
  /**
   * @deprecated Use lbMode. Read only when lbMode is not given: the old switch of the client side
   * alone, with a fresh server connection per request either way (false = strict).
   */
  readonly clientKeepAlive?: boolean;
}

/** Longest time from an app failing /readyz to HAProxy marking it down (ms): inter x fall + check timeout. */
export function checkWindowMs(options: Pick<HaproxyConfigOptions, "checkInterMs" | "checkFall">): number {
  return (options.checkInterMs ?? 500) * (options.checkFall ?? 2) + 1000;
}

function checkServer(server: AppServer): void {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(server.name)) {
    throw new RangeError(`server name must be 1-64 letters, digits, '_', '.' or '-'; got '${server.name}'.`);
  }
  if (!/^[A-Za-z0-9.:[\]-]{1,253}$/.test(server.address)) {
    throw new RangeError(`server address must be a host name or IP address; got '${server.address}'.`);
  }
  if (!Number.isInteger(server.port) || server.port < 1 || server.port > 65535) {
    throw new RangeError(`server port must be an integer from 1 to 65535; got '${server.port}' for ${server.name}.`);
  }
}

const CONNECTION_LINES: Record<LbMode, { client: string; server: string }> = {
  keepalive: {
    client: "# lb-mode keepalive: client connections stay open between requests (HAProxy's default)",
    server: "http-reuse safe",
  },
  strict: {
    client: "option httpclose",
    server: "http-reuse safe\n    option http-server-close",
  },
};

export function renderHaproxyConfig(options: HaproxyConfigOptions): string {
  if (options.servers.length === 0) throw new RangeError("renderHaproxyConfig needs at least one app server.");
  if (options.threads !== undefined && !(Number.isInteger(options.threads) && options.threads >= 1 && options.threads <= 64)) {
    throw new RangeError(`threads must be an integer from 1 to 64; got '${options.threads}'.`);
  }
  options.servers.forEach(checkServer);
  const legacy = options.lbMode === undefined && options.clientKeepAlive !== undefined;
  const lbMode = options.lbMode ?? (legacy ? "strict" : "keepalive");
  const mode = legacy
    ? {
        client: CONNECTION_LINES[options.clientKeepAlive ? "keepalive" : "strict"].client,
        server: CONNECTION_LINES.strict.server,
      }
    : CONNECTION_LINES[lbMode];
  const values: Record<string, string> = {
    LB_MODE: legacy && options.clientKeepAlive === true ? "client keep-alive, server close (legacy clientKeepAlive)" : lbMode,
    MAXCONN: String(options.maxconn ?? 4096),
    NBTHREAD:
      options.threads === undefined ? "# nbthread: HAProxy's default (one thread per CPU)" : `nbthread ${options.threads}`,
    BIND: options.bind ?? "0.0.0.0:80",
    STATS_BIND: options.statsBind ?? "0.0.0.0:8404",
    STATS_SOCKET: options.statsSocket ?? "/run/haproxy-turnomatic.sock",
    CHECK_INTER_MS: String(options.checkInterMs ?? 500),
    CHECK_FALL: String(options.checkFall ?? 2),
    CHECK_RISE: String(options.checkRise ?? 2),
    CHECK_WINDOW_MS: String(checkWindowMs(options)),
    SERVER_MAXCONN: String(options.serverMaxconn ?? 512),
    CLIENT_CONNECTION_MODE: mode.client,
    SERVER_CONNECTION_MODE: mode.server,
    SERVERS: options.servers
      .map((s) => `    server ${s.name} ${s.address}:${s.port}${s.disabled === true ? " disabled" : ""}`)
      .join("\n"),
  };
  return readFileSync(HAPROXY_TEMPLATE, "utf8").replace(/\{\{([A-Z_]+)\}\}/g, (whole, key: string) => {
    const value = values[key];
    if (value === undefined) throw new Error(`haproxy template: unknown placeholder ${whole}`);
    return value;
  });
}

export const USAGE = `usage: npx bun scripts/cluster/haproxy-config.ts [--lb-mode keepalive|strict] [--bind ADDR:PORT] HOST:PORT... > haproxy.cfg
  Renders deploy/haproxy/haproxy.cfg.template with one server line per HOST:PORT (app1, app2, ...).
  --lb-mode keepalive  (default) keep-alive to clients and pooled server connections (http-reuse safe)
  --lb-mode strict     one request per client connection (option httpclose + http-server-close):
                       every failure reaches the client, nothing is replayed; ~2x the CPU per request
  --bind ADDR:PORT     public listener (default 0.0.0.0:80)
  --stats-bind ADDR:PORT  /metrics and /stats listener (default 0.0.0.0:8404)
  -h, --help           this text`;

const ARGS = {
  "lb-mode": { type: "string" },
  bind: { type: "string" },
  "stats-bind": { type: "string" },
} as const;

/** Parses the command line into options; throws UsageError (with the reason) on bad input. */
export function parseHaproxyConfigArgs(argv: readonly string[]): HaproxyConfigOptions | "help" {
  const { values, positionals } = parseCommandLine({ name: "haproxy-config", usage: USAGE, options: ARGS }, argv);
  if (values.help === true) return "help";
  if (positionals.length === 0) throw new UsageError("give at least one app server as HOST:PORT.");
  const servers = positionals.map((arg, i) => {
    const match = /^(.+):([^:]*)$/.exec(arg);
    if (match === null) throw new UsageError(`expected HOST:PORT, got '${arg}'.`);
    const [, address = "", port = ""] = match;
    if (!/^\d{1,5}$/.test(port)) throw new UsageError(`port of '${arg}' must be an integer from 1 to 65535; got '${port}'.`);
    return { name: `app${i + 1}`, address, port: Number(port) };
  });
  let lbMode: LbMode;
  try {
    lbMode = parseLbMode(values["lb-mode"] ?? "keepalive");
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return {
    servers,
    lbMode,
    ...(values.bind === undefined ? {} : { bind: values.bind }),
    ...(values["stats-bind"] === undefined ? {} : { statsBind: values["stats-bind"] }),
  };
}

if (import.meta.main) {
  try {
    const parsed = parseHaproxyConfigArgs(process.argv.slice(2));
    if (parsed === "help") process.stdout.write(`${USAGE}\n`);
    else process.stdout.write(renderHaproxyConfig(parsed));
  } catch (error) {
    if (!(error instanceof UsageError || error instanceof RangeError)) throw error;
    process.stderr.write(`haproxy-config: ${error.message}\n${USAGE}\n`);
    process.exit(2);
  }
}
