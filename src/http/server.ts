import type { Server } from "bun";
import type { App } from "./app.ts";
import { problemResponse, toTurnoError } from "./responses.ts";

export interface ServerOptions {
  readonly port: number;
  readonly host: string;
  /** Let several worker processes listen on one port (SO_REUSEPORT). */
  readonly reusePort: boolean;
  readonly idleTimeoutSeconds: number;
  readonly maxBodyBytes: number;
}

/**
 * Starts Bun.serve for the app. Limits that Bun enforces itself: request bodies (maxRequestBodySize),
 * idle and slow connections (idleTimeout; a slowloris sending one header byte at a time is cut when it
 * goes idle), and the header size (`bun --max-http-header-size`, set in package.json's start script).
 */
export function startServer(app: App, options: ServerOptions): Server<undefined> {
  return Bun.serve({
    port: options.port,
    hostname: options.host,
    reusePort: options.reusePort,
    idleTimeout: options.idleTimeoutSeconds,
    maxRequestBodySize: options.maxBodyBytes,
    development: false,
    fetch: app.handle,
    error: (error) => problemResponse(toTurnoError(error), "/"),
  });
}
