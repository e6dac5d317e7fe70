/**
 * One keep-alive HTTP/1.1 connection that never resends a request. fetch() is not used on purpose:
 * Bun's fetch silently retries a GET whose keep-alive connection closed before the response (as
 * browsers do), and a turn request that is sent twice may be counted twice: a test must see every
 * attempt as it happened. After a failure the next request opens a new connection.
 */
import type { Socket } from "bun";

export interface RawAnswer {
  readonly status: number;
  readonly body: string;
}

export class RawKeepAliveConnection {
  readonly #host: string;
  readonly #port: number;
  #socket: Socket | undefined;
  #buffer = "";
  #generation = 0;
  #waiter: ((result: RawAnswer | undefined) => void) | undefined;
  /** Requests sent on the current connection (1 = its first). */
  #sentOnConnection = 0;

  constructor(url: string) {
    const parsed = new URL(url);
    this.#host = parsed.hostname;
    this.#port = Number(parsed.port || 80);
  }

  /** How many requests the current connection has carried so far (0 before the first). */
  get sentOnConnection(): number {
    return this.#sentOnConnection;
  }

  /** Sends one GET; undefined = no answer (closed, reset, timed out): it may or may not have been counted. */
  async request(path: string, timeoutMs: number, headers: Record<string, string> = {}): Promise<RawAnswer | undefined> {
    if (this.#socket === undefined) {
      try {
        this.#socket = await this.#connect();
        this.#sentOnConnection = 0;
      } catch {
        return undefined;
      }
    }
    const socket = this.#socket;
    const answer = new Promise<RawAnswer | undefined>((resolve) => {
      this.#waiter = resolve;
    });
    const timer = setTimeout(() => this.#fail(), timeoutMs);
    const extra = Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join("");
    this.#sentOnConnection++;
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${this.#host}\r\n${extra}\r\n`);
    const result = await answer;
    clearTimeout(timer);
    return result;
  }

  close(): void {
    this.#drop();
  }

  #connect(): Promise<Socket> {
    this.#buffer = "";
    // Events of an earlier, dropped connection must not touch the current one.
    const generation = ++this.#generation;
    const current = () => generation === this.#generation;
    return Bun.connect({
      hostname: this.#host,
      port: this.#port,
      socket: {
        data: (_socket, data) => {
          if (!current()) return;
          this.#buffer += data.toString("latin1");
          this.#parse();
        },
        close: () => {
          if (current()) this.#fail();
        },
        error: () => {
          if (current()) this.#fail();
        },
      },
    });
  }

  #parse(): void {
    const headerEnd = this.#buffer.indexOf("\r\n\r\n");
    if (headerEnd < 0) return;
    const head = this.#buffer.slice(0, headerEnd);
    const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
    if (this.#buffer.length < headerEnd + 4 + length) return;
    const status = Number(head.slice(9, 12));
    const body = this.#buffer.slice(headerEnd + 4, headerEnd + 4 + length);
    this.#buffer = this.#buffer.slice(headerEnd + 4 + length);
    if (/\r\nconnection:\s*close/i.test(head)) this.#drop();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.({ status, body });
  }

  #drop(): void {
    this.#generation++;
    this.#socket?.terminate();
    this.#socket = undefined;
    this.#buffer = "";
  }

  #fail(): void {
    this.#drop();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.(undefined);
  }
}
