/**
 * A TCP proxy between the service and Redis that chaos tests can break, as a network would:
 *
 * - `blackhole()`: a partition. Bytes stop flowing both ways and are held, as TCP holds unacknowledged
 *   segments; `heal()` delivers them late, in order (what a real link coming back does). New
 *   connections are accepted but their bytes are held too.
 * - `reset()`: every open connection is cut (RST-like: both sides destroyed).
 * - `retarget(host, port)`: new connections go elsewhere; with `reset()`, a failover as a client
 *   sees it (the same address now serves another server, e.g. a promoted replica).
 * - `dropResponses(n)`: the next n times the server sends something back, it is thrown away and that
 *   connection is cut: the server answered, the client never hears it (a response lost with a
 *   connection or a host). In front of the HTTP service this is the exactly-once client's fault.
 *
 * Loopback only: it listens on 127.0.0.1 and connects to the target given by the test.
 */
import { createServer, type Server, type Socket, connect } from "node:net";

export interface FaultProxy {
  readonly port: number;
  /** redis:// URL of the proxy. */
  readonly url: string;
  blackhole(): void;
  heal(): void;
  reset(): void;
  retarget(host: string, port: number): void;
  /** Loses the next `count` answers of the server (see the module comment). */
  dropResponses(count: number): void;
  /** Answers lost by dropResponses so far. */
  readonly dropped: number;
  /** Connections opened through the proxy so far. */
  readonly connections: number;
  close(): Promise<void>;
}

interface Link {
  readonly client: Socket;
  readonly upstream: Socket;
  /** Bytes held while blackholed, per direction, in order. */
  readonly toUpstream: Buffer[];
  readonly toClient: Buffer[];
}

export async function startFaultProxy(initialHost: string, initialPort: number): Promise<FaultProxy> {
  let targetHost = initialHost;
  let targetPort = initialPort;
  const links = new Set<Link>();
  let blackholed = false;
  let opened = 0;
  let toDrop = 0;
  let dropped = 0;
  const flush = (link: Link) => {
    for (const chunk of link.toUpstream.splice(0)) link.upstream.write(chunk);
    for (const chunk of link.toClient.splice(0)) link.client.write(chunk);
  };
  const server: Server = createServer((client) => {
    opened++;
    const upstream = connect(targetPort, targetHost);
    const link: Link = { client, upstream, toUpstream: [], toClient: [] };
    links.add(link);
    client.on("data", (chunk: Buffer) => (blackholed ? link.toUpstream.push(chunk) : upstream.write(chunk)));
    const drop = () => {
      links.delete(link);
      client.destroy();
      upstream.destroy();
    };
    upstream.on("data", (chunk: Buffer) => {
      if (toDrop > 0) {
        toDrop--;
        dropped++;
        drop();
      } else if (blackholed) link.toClient.push(chunk);
      else client.write(chunk);
    });
    client.on("close", drop);
    upstream.on("close", drop);
    client.on("error", drop);
    upstream.on("error", drop);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get connections() {
      return opened;
    },
    get dropped() {
      return dropped;
    },
    dropResponses: (count) => {
      toDrop = count;
    },
    blackhole: () => {
      blackholed = true;
    },
    heal: () => {
      blackholed = false;
      for (const link of links) flush(link);
    },
    retarget: (host, port) => {
      targetHost = host;
      targetPort = port;
    },
    reset: () => {
      for (const link of [...links]) {
        links.delete(link);
        link.client.destroy();
        link.upstream.destroy();
      }
    },
    close: async () => {
      for (const link of [...links]) {
        link.client.destroy();
        link.upstream.destroy();
      }
      links.clear();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
