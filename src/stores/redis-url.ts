/**
 * Parser of the multi-host store URLs, which WHATWG URL cannot read (a comma-separated host list):
 *
 *   redis+cluster://[user:password@]h1:p1,h2:p2[?tls=true]          (rediss+cluster:// = TLS)
 *   redis+sentinel://[user:password@]h1:p1,h2:p2/<master-name>[?db=0&sentinelPassword=…&tls=true]
 *
 * User and password are percent-decoded and belong to the Redis servers, not to the sentinels.
 */
import { ConfigError } from "../domain/errors.ts";

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export interface MultiHostUrl {
  readonly tls: boolean;
  readonly username: string | undefined;
  readonly password: string | undefined;
  readonly hosts: readonly HostPort[];
  /** The path without its leading slash ("" when none): the master name for Sentinel. */
  readonly path: string;
  readonly params: URLSearchParams;
}

const SCHEMES: Record<string, boolean> = {
  "redis+cluster://": false,
  "rediss+cluster://": true,
  "redis+sentinel://": false,
  "rediss+sentinel://": true,
};

/** Parses a redis+cluster:// or redis+sentinel:// URL; throws ConfigError naming what to fix. */
export function parseMultiHostUrl(url: string, defaultPort: number): MultiHostUrl {
  const scheme = Object.keys(SCHEMES).find((s) => url.startsWith(s));
  if (scheme === undefined) throw new ConfigError(`TURNOMATIC_STORE '${redactStoreUrl(url)}' is not a multi-host Redis URL.`);
  let rest = url.slice(scheme.length);
  const queryAt = rest.indexOf("?");
  const params = new URLSearchParams(queryAt === -1 ? "" : rest.slice(queryAt + 1));
  if (queryAt !== -1) rest = rest.slice(0, queryAt);
  const slashAt = rest.indexOf("/");
  const path = slashAt === -1 ? "" : decodeURIComponent(rest.slice(slashAt + 1));
  if (slashAt !== -1) rest = rest.slice(0, slashAt);
  let username: string | undefined;
  let password: string | undefined;
  const atAt = rest.lastIndexOf("@");
  if (atAt !== -1) {
    const userinfo = rest.slice(0, atAt);
    rest = rest.slice(atAt + 1);
    const colonAt = userinfo.indexOf(":");
    username = decodeURIComponent(colonAt === -1 ? userinfo : userinfo.slice(0, colonAt)) || undefined;
    password = colonAt === -1 ? undefined : decodeURIComponent(userinfo.slice(colonAt + 1));
  }
  const hosts = rest.split(",").map((entry) => parseHostPort(entry, defaultPort, url));
  const tlsParam = params.get("tls");
  const tls = (SCHEMES[scheme] as boolean) || tlsParam === "true" || tlsParam === "1";
  return { tls, username, password, hosts, path, params };
}

function parseHostPort(entry: string, defaultPort: number, url: string): HostPort {
  const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(entry.trim());
  const port = Number(match?.[2] ?? defaultPort);
  if (match === null || port < 1 || port > 65535) {
    throw new ConfigError(
      `TURNOMATIC_STORE '${redactStoreUrl(url)}' has a bad host '${entry}'; list hosts as host:port separated by commas, e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000`,
    );
  }
  return { host: (match[1] as string).replace(/^\[|\]$/g, ""), port };
}

/** A store URL as it may be logged or shown: the userinfo (password) cut out. */
export function redactStoreUrl(url: string): string {
  return url.replace(/\/\/([^@/]*)@/, "//<redacted>@");
}
