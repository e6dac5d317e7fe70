/**
 * Renders deploy/haproxy/haproxy.cfg.template for a list of app hosts. Used by the cluster tool and
 * runnable on its own:
 *   bun scripts/cluster/haproxy-config.ts 10.0.0.11:7017 10.0.0.12:7017 > haproxy.cfg
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const HAPROXY_TEMPLATE = join(import.meta.dir, "../../deploy/haproxy/haproxy.cfg.template");

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
  /**
   * Keep client connections open between requests. Default false: one request per client connection,
   * because clients silently resend a GET whose keep-alive connection dropped (see the template).
   */
  readonly clientKeepAlive?: boolean;
}

/** Longest time from an app failing /readyz to HAProxy marking it down (ms): inter x fall + check timeout. */
export function checkWindowMs(options: Pick<HaproxyConfigOptions, "checkInterMs" | "checkFall">): number {
  return (options.checkInterMs ?? 500) * (options.checkFall ?? 2) + 1000;
}

export function renderHaproxyConfig(options: HaproxyConfigOptions): string {
  if (options.servers.length === 0) throw new Error("renderHaproxyConfig needs at least one app server.");
  const values: Record<string, string> = {
    MAXCONN: String(options.maxconn ?? 4096),
    BIND: options.bind ?? "0.0.0.0:80",
    STATS_BIND: options.statsBind ?? "0.0.0.0:8404",
    STATS_SOCKET: options.statsSocket ?? "/run/haproxy-turnomatic.sock",
    CHECK_INTER_MS: String(options.checkInterMs ?? 500),
    CHECK_FALL: String(options.checkFall ?? 2),
    CHECK_RISE: String(options.checkRise ?? 2),
    CHECK_WINDOW_MS: String(checkWindowMs(options)),
    SERVER_MAXCONN: String(options.serverMaxconn ?? 512),
    CLIENT_CONNECTION_MODE: options.clientKeepAlive === true ? "# option httpclose  (off: clientKeepAlive)" : "option httpclose",
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

if (import.meta.main) {
  const servers = process.argv.slice(2).map((arg, i) => {
    const [address, port] = arg.split(":");
    if (address === undefined || port === undefined) throw new Error(`expected host:port, got '${arg}'`);
    return { name: `app${i + 1}`, address, port: Number(port) };
  });
  process.stdout.write(renderHaproxyConfig({ servers }));
}
