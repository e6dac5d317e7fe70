/**
 * A small HTTP/1.1 keep-alive client over raw TCP (Bun.connect): `size` connections,
 * one request in flight on each (no pipelining, so a response always belongs to the request just
 * sent). It exists because fetch cost about twice the CPU per request (19.0 vs 9.75 µs in
 * docs/reports/scalability.md; at 2000/s turnoload with fetch used ~75% of a core), which on a small host made
 * the generator, not the service, the bottleneck and the source of the measured latency.
 *
 * Responses are parsed only as far as needed: status line, Content-Length, body (HEAD and 204/304
 * have none). A response with `Connection: close`, a timeout or a socket error drops the
 * connection; the next request opens a new one. bench/optimizations.ts measures it against fetch;
 * turnoload's worker threads use the same approach, inlined with their timing
 * (loadtest/tools/turnoload-worker.ts).
 */
import type { Socket } from "bun";

export interface PoolResponse {
  readonly status: number;
  readonly body: string;
}

interface Pending {
  readonly resolve: (response: PoolResponse) => void;
  readonly reject: (error: Error) => void;
  readonly deadline: number;
  readonly head: boolean;
}

interface Connection {
  socket: Socket<undefined> | undefined;
  buffer: string;
  pending: Pending | undefined;
}

export class HttpPool {
  readonly #hostname: string;
  readonly #port: number;
  readonly #hostHeader: string;
  readonly #timeoutMs: number;
  readonly #idle: Connection[] = [];
  readonly #all: Connection[] = [];
  readonly #sweep: ReturnType<typeof setInterval>;

  constructor(target: string, size: number, timeoutMs: number) {
    const url = new URL(target);
    this.#hostname = url.hostname.replace(/^\[|\]$/g, "");
    this.#port = Number(url.port || 80);
    this.#hostHeader = url.host;
    this.#timeoutMs = timeoutMs;
    for (let i = 0; i < size; i++) {
      const connection: Connection = { socket: undefined, buffer: "", pending: undefined };
      this.#all.push(connection);
      this.#idle.push(connection);
    }
    this.#sweep = setInterval(() => this.#expire(), Math.min(100, timeoutMs / 4));
  }

  /** Connections free for a request now. */
  get idle(): number {
    return this.#idle.length;
  }

  /** Sends one request on an idle connection; the caller must check `idle` first. */
  async request(method: string, path: string, headers = ""): Promise<PoolResponse> {
    const connection = this.#idle.pop();
    if (connection === undefined) throw new Error("HttpPool.request without an idle connection; check pool.idle first");
    try {
      if (connection.socket === undefined) connection.socket = await this.#connect(connection);
      return await new Promise<PoolResponse>((resolve, reject) => {
        connection.pending = { resolve, reject, deadline: performance.now() + this.#timeoutMs, head: method === "HEAD" };
        connection.socket?.write(`${method} ${path} HTTP/1.1\r\nHost: ${this.#hostHeader}\r\n${headers}\r\n`);
      });
    } finally {
      this.#idle.push(connection);
    }
  }

  close(): void {
    clearInterval(this.#sweep);
    for (const connection of this.#all) this.#drop(connection, new Error("pool closed"));
  }

  #connect(connection: Connection): Promise<Socket<undefined>> {
    return Bun.connect({
      hostname: this.#hostname,
      port: this.#port,
      socket: {
        data: (_socket, data) => {
          connection.buffer += data.toString("latin1");
          this.#parse(connection);
        },
        close: () => this.#drop(connection, new Error("connection closed by the server")),
        error: (_socket, error) => this.#drop(connection, error),
      },
    });
  }

  #parse(connection: Connection): void {
    const pending = connection.pending;
    const text = connection.buffer;
    const end = text.indexOf("\r\n\r\n");
    if (pending === undefined || end < 0) return;
    const status = Number(text.slice(9, 12));
    const head = text.slice(0, end).toLowerCase();
    const at = head.indexOf("\r\ncontent-length:");
    const length =
      pending.head || status === 204 || status === 304 || at < 0
        ? 0
        : Number.parseInt(head.slice(at + 17, head.indexOf("\r\n", at + 17) >>> 0), 10);
    if (text.length < end + 4 + length) return;
    connection.buffer = text.slice(end + 4 + length);
    connection.pending = undefined;
    pending.resolve({ status, body: text.slice(end + 4, end + 4 + length) });
    if (head.includes("\r\nconnection: close")) this.#drop(connection, new Error("closed after the response"));
  }

  #drop(connection: Connection, error: Error): void {
    const pending = connection.pending;
    connection.pending = undefined;
    connection.buffer = "";
    const socket = connection.socket;
    connection.socket = undefined;
    socket?.end();
    pending?.reject(error);
  }

  #expire(): void {
    const now = performance.now();
    for (const connection of this.#all)
      if (connection.pending !== undefined && connection.pending.deadline < now)
        this.#drop(connection, new Error(`no answer within ${this.#timeoutMs} ms`));
  }
}
