/**
 * Closed-loop load generator that runs inside the topology's client namespace (the test process in
 * the root namespace cannot reach the LB): `clients` loops, each with one request in flight, until
 * `requests` were sent or `durationMs` passed. Records every request and writes the full history,
 * plus each id's counter after the run, as JSON to `out`. Times are epoch milliseconds taken from one
 * monotonic clock (timeOrigin + performance.now()), so the test can line them up with its faults.
 *
 *   bun test/distributed/load-client.ts '<json options>'
 */
import { writeFileSync } from "node:fs";
import type { Socket } from "bun";
import type { HistoryEntry } from "../helpers/history-checker.ts";

export interface LoadClientOptions {
  readonly url: string;
  readonly ids: readonly string[];
  readonly clients: number;
  readonly requests: number;
  readonly durationMs: number;
  readonly timeoutMs: number;
  readonly out: string;
  /**
   * "raw" (default): our own HTTP/1.1 client that never resends. "fetch": Bun's fetch, which resends a
   * GET on its own when a keep-alive connection drops, as an off-the-shelf client would.
   */
  readonly client?: "raw" | "fetch";
  /** Pause of each client between its requests (ms): a light, steady load instead of a flat-out one. Default 0. */
  readonly pauseMs?: number;
}

export interface LoadClientResult {
  readonly history: HistoryEntry[];
  readonly after: Record<string, number>;
  readonly startedAt: number;
  readonly endedAt: number;
}

const now = () => performance.timeOrigin + performance.now();

/**
 * One keep-alive HTTP/1.1 connection that never resends a request. fetch() is not used on purpose:
 * Bun's fetch silently retries a GET whose keep-alive connection closed before the response (as
 * browsers do), and a turn request that is sent twice may be counted twice: the checker must see
 * every attempt as it happened.
 */
class RawConnection {
  readonly #host: string;
  readonly #port: number;
  #socket: Socket | undefined;
  #buffer = "";
  #generation = 0;
  #waiter: ((result: { status: number; body: string } | undefined) => void) | undefined;

  constructor(url: string) {
    const parsed = new URL(url);
    this.#host = parsed.hostname;
    this.#port = Number(parsed.port || 80);
  }

  async request(path: string, timeoutMs: number): Promise<{ status: number; body: string } | undefined> {
    if (this.#socket === undefined) {
      try {
        this.#socket = await this.#connect();
      } catch {
        return undefined;
      }
    }
    const socket = this.#socket;
    const answer = new Promise<{ status: number; body: string } | undefined>((resolve) => {
      this.#waiter = resolve;
    });
    const timer = setTimeout(() => this.#fail(), timeoutMs);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: ${this.#host}\r\n\r\n`);
    const result = await answer;
    clearTimeout(timer);
    return result;
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

  /** No answer (closed, reset, timed out): the request may or may not have been counted. */
  #fail(): void {
    this.#drop();
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.(undefined);
  }
}

interface Connection {
  request(path: string, timeoutMs: number): Promise<{ status: number; body: string } | undefined>;
}

function fetchConnection(url: string): Connection {
  return {
    request: async (path, timeoutMs) => {
      try {
        const response = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(timeoutMs) });
        return { status: response.status, body: await response.text() };
      } catch {
        return undefined;
      }
    },
  };
}

async function requestTurn(connection: Connection, id: string, timeoutMs: number): Promise<HistoryEntry> {
  const sentAt = now();
  const answer = await connection.request(`/turno/${id}`, timeoutMs);
  const doneAt = now();
  if (answer === undefined) return { id, sentAt, doneAt, status: 0 };
  if (answer.status !== 200) return { id, sentAt, doneAt, status: answer.status };
  const body = JSON.parse(answer.body) as { id: string; turno: number };
  if (body.id !== id) throw new Error(`response for ${id} names id ${body.id}`);
  return { id, sentAt, doneAt, status: 200, turno: body.turno };
}

async function main(options: LoadClientOptions): Promise<void> {
  const history: HistoryEntry[] = [];
  const startedAt = now();
  const stopAt = startedAt + options.durationMs;
  let next = 0;
  const progress = setInterval(() => process.stdout.write(`progress ${history.length}\n`), 250);
  // SIGTERM: send nothing new, finish what is in flight, write the history (the test decides when).
  let stopRequested = false;
  process.on("SIGTERM", () => {
    stopRequested = true;
  });
  const client = async (index: number) => {
    const connection = options.client === "fetch" ? fetchConnection(options.url) : new RawConnection(options.url);
    let k = index;
    while (next < options.requests && now() < stopAt && !stopRequested) {
      next++;
      history.push(await requestTurn(connection, options.ids[k++ % options.ids.length] as string, options.timeoutMs));
      if ((options.pauseMs ?? 0) > 0) await Bun.sleep(options.pauseMs as number);
    }
  };
  await Promise.all(Array.from({ length: options.clients }, (_, i) => client(i)));
  clearInterval(progress);
  const endedAt = now();
  const after: Record<string, number> = {};
  for (const id of options.ids) {
    const response = await fetch(`${options.url}/turno/${id}/actual`, { signal: AbortSignal.timeout(5000) });
    after[id] = ((await response.json()) as { turno: number }).turno;
  }
  const result: LoadClientResult = { history, after, startedAt, endedAt };
  writeFileSync(options.out, JSON.stringify(result));
  process.stdout.write(`done ${history.length}\n`);
}

if (import.meta.main) await main(JSON.parse(process.argv[2] ?? "{}") as LoadClientOptions);
