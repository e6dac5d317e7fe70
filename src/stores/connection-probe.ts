/**
 * One TCP (and TLS) connection attempt to a Redis endpoint, to name a cause the client library
 * does not pass on. ioredis reports a sentinel or a cluster node it could not reach only as
 * "Connection is closed." (the TLS verification error stays inside the connection it dropped), so
 * when a Sentinel or Cluster store fails with such a message, connection-events.ts connects once
 * by itself, with the same TLS settings, and classifies what happens (store-errors.ts).
 */
import { connect as connectTcp } from "node:net";
import { type ConnectionOptions, connect as connectTls } from "node:tls";
import { classifyStoreError, type StoreCause } from "./store-errors.ts";

export interface ProbeTarget {
  readonly host: string;
  readonly port: number;
  /** TLS settings as the store uses them; undefined = plain TCP. */
  readonly tls?: ConnectionOptions;
}

/** The cause that stops a connection to `target`, or undefined when TCP (and TLS) succeed. */
export function probeConnection(target: ProbeTarget, timeoutMs: number): Promise<StoreCause | undefined> {
  return new Promise((resolve) => {
    const where = `${target.host}:${target.port}`;
    const socket =
      target.tls === undefined
        ? connectTcp({ host: target.host, port: target.port })
        : connectTls({ ...target.tls, host: target.host, port: target.port });
    const finish = (cause: StoreCause | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(cause);
    };
    const timer = setTimeout(
      () =>
        finish({ kind: "timeout", message: `connecting to Redis at ${where} timed out (a firewall, or a host that is down?)` }),
      timeoutMs,
    );
    socket.once(target.tls === undefined ? "connect" : "secureConnect", () => finish(undefined));
    socket.once("error", (error) => {
      const cause = classifyStoreError(error);
      finish(cause ?? { kind: "reset", message: `the connection to Redis at ${where} failed (${error.message})` });
    });
  });
}
