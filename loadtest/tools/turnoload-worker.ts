/**
 * One turnoload worker thread: sends its share of an open-loop schedule and measures it.
 *
 * Request k of the whole run (all workers) is due at start + k / rate; worker i of W sends
 * k = i, i + W, i + 2W, ... (so W workers interleave one schedule). Each time the worker looks at
 * the clock (a 1 ms timer, and after every response, which at high rates is often) it notes every
 * request that became due since and how late it noticed it: that lateness is the generator's own
 * **scheduling error** (a thread descheduled by the kernel or a busy event loop), kept in its own
 * histogram so a step where it is a significant part of the SLO can be declared invalid instead of
 * blaming the service. A due request that finds every connection of the worker busy waits; that
 * wait is the service's (its connections are busy), so it counts in the latency, which is measured
 * from the intended send time (no coordinated omission).
 *
 * Connections are opened before the start time; one request in flight per connection (no
 * pipelining, so a response always belongs to the request just written). Clock: this thread's
 * performance.now(); every thread's clock has its own origin, so the main thread measures each
 * worker's offset (ping/pong, turnoload.ts) and moves the history onto its own time line before
 * the I1-I4 checker judges real-time order across workers. Latencies go into HDR histograms
 * (bench/toolkit/hdr.ts), the history into typed arrays.
 */
import type { Socket } from "bun";
import { createHistogram, encodeHistogram, recordMs } from "../../bench/toolkit/hdr.ts";
import type { Distribution } from "../options.ts";
import { createPicker } from "../ids.ts";
import { hostileRequest } from "./hostile.ts";

declare const self: Worker;

/** What a run sends, the same for the whole run (OpenLoopOptions) and for each worker's share of it. */
export interface LoadSchedule {
  readonly target: string;
  /** Requests/s of the whole run (all workers together). */
  readonly rate: number;
  readonly seconds: number;
  readonly ids: readonly string[];
  readonly dist: Distribution;
  readonly hostile: number;
  readonly timeoutMs: number;
  /** Keep the full history (id, sent, done, status, turno) for the I1-I4 checker. */
  readonly record: boolean;
}

export interface WorkerJob extends LoadSchedule {
  readonly index: number;
  readonly workers: number;
  /** This worker's connections (its in-flight cap). */
  readonly connections: number;
}

export interface WorkerHistory {
  readonly length: number;
  readonly id: Uint32Array;
  readonly sentAt: Float64Array;
  readonly doneAt: Float64Array;
  readonly status: Uint16Array;
  /** NaN where the response carried no turno. */
  readonly turno: Float64Array;
}

export interface WorkerReport {
  /** HDR histograms (compressed base64), µs: from the intended send time, from the actual write, and the scheduling error. */
  readonly latency: string;
  readonly service: string;
  readonly lag: string;
  /** From the intended send time to the actual write: the scheduling error plus any wait for a free connection. */
  readonly sendDelay: string;
  readonly sent: number;
  readonly answered: number;
  readonly errors: number;
  readonly statusCounts: Record<string, number>;
  readonly shapeErrors: number;
  readonly shapeExamples: string[];
  readonly hostile: { sent: number; refused: number; wrong: number; examples: string[] };
  /** Most due requests that waited for a free connection at once. */
  readonly maxBacklog: number;
  readonly firstSendAt: number;
  readonly lastDoneAt: number;
  readonly history: WorkerHistory | undefined;
}

export type WorkerMessage =
  | { readonly type: "connect"; readonly job: WorkerJob }
  | { readonly type: "ping" }
  | { readonly type: "start"; readonly startAt: number }
  | { readonly type: "exit" };

export type WorkerReply =
  | { readonly type: "ready" }
  | { readonly type: "pong"; readonly at: number }
  | { readonly type: "done"; readonly report: WorkerReport }
  | { readonly type: "failed"; readonly error: string };

const clock = () => performance.now();

interface Connection {
  socket: Socket<undefined> | undefined;
  buffer: string;
  /** Global index of the request in flight, -1 when idle. */
  k: number;
  idIndex: number;
  hostileKind: string;
  hostileOptions: boolean;
  /** A HEAD request: its response has no body whatever Content-Length says. */
  head: boolean;
  intended: number;
  sentAt: number;
}

/** `{"id":"<id>","turno":<n>}` exactly, or undefined. */
export function turnoOf(body: string, prefix: string): number | undefined {
  if (!body.startsWith(prefix) || body.charCodeAt(body.length - 1) !== 125) return undefined;
  const digits = body.slice(prefix.length, -1);
  if (!/^[0-9]{1,16}$/.test(digits)) return undefined;
  return Number(digits);
}

class Run {
  readonly #job: WorkerJob;
  readonly #url: URL;
  readonly #requests: string[];
  readonly #prefixes: string[];
  readonly #pick: () => number;
  readonly #interval: number;
  readonly #total: number;
  readonly #all: Connection[] = [];
  readonly #idle: Connection[] = [];
  readonly #latency = createHistogram();
  readonly #service = createHistogram();
  readonly #lag = createHistogram();
  readonly #sendDelay = createHistogram();
  readonly #statusCounts: Record<string, number> = {};
  readonly #hostile = { sent: 0, refused: 0, wrong: 0, examples: [] as string[] };
  readonly #shapeExamples: string[] = [];
  #history: WorkerHistory | undefined;
  #historyLength = 0;
  #start = 0;
  #nextK: number;
  #noticedK: number;
  #answered = 0;
  #errors = 0;
  #shapeErrors = 0;
  #maxBacklog = 0;
  #firstSendAt = Number.POSITIVE_INFINITY;
  #lastDoneAt = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #finished = false;

  constructor(job: WorkerJob) {
    this.#job = job;
    this.#url = new URL(job.target);
    this.#requests = job.ids.map((id) => `GET /turno/${id} HTTP/1.1\r\nHost: ${this.#url.host}\r\n\r\n`);
    this.#prefixes = job.ids.map((id) => `{"id":"${id}","turno":`);
    this.#pick = createPicker(job.dist, job.ids.length);
    this.#interval = 1000 / job.rate;
    this.#total = Math.max(1, Math.floor(job.rate * job.seconds));
    this.#nextK = job.index;
    this.#noticedK = job.index;
    if (job.record) {
      const n = Math.ceil(this.#total / job.workers) + 1;
      this.#history = {
        length: 0,
        id: new Uint32Array(n),
        sentAt: new Float64Array(n),
        doneAt: new Float64Array(n),
        status: new Uint16Array(n),
        turno: new Float64Array(n),
      };
    }
  }

  async connect(): Promise<void> {
    for (let i = 0; i < this.#job.connections; i++)
      this.#all.push({
        socket: undefined,
        buffer: "",
        k: -1,
        idIndex: 0,
        hostileKind: "",
        hostileOptions: false,
        head: false,
        intended: 0,
        sentAt: 0,
      });
    await Promise.all(this.#all.map((c) => this.#open(c)));
  }

  async #open(connection: Connection): Promise<void> {
    connection.socket = await Bun.connect({
      hostname: this.#url.hostname.replace(/^\[|\]$/g, ""),
      port: Number(this.#url.port || 80),
      socket: {
        data: (_socket, data) => this.#onData(connection, data.toString("latin1")),
        close: () => this.#fail(connection),
        error: () => this.#fail(connection),
      },
    });
    connection.socket.setNoDelay(true);
    this.#idle.push(connection);
  }

  start(startAt: number, done: (report: WorkerReport) => void): void {
    this.#start = startAt;
    this.#done = done;
    this.#sweep = setInterval(() => this.#expire(), 50);
    this.#tick();
  }

  #done: (report: WorkerReport) => void = () => undefined;

  #tick = (): void => {
    this.#pump();
    if (this.#noticedK < this.#total) {
      const wait = this.#start + this.#noticedK * this.#interval - clock();
      this.#timer = setTimeout(this.#tick, Math.max(1, wait));
    }
  };

  /** Notes what became due (and how late), then sends what is due while connections are free. */
  #pump(): void {
    const now = clock();
    const { workers } = this.#job;
    while (this.#noticedK < this.#total && this.#start + this.#noticedK * this.#interval <= now) {
      recordMs(this.#lag, now - (this.#start + this.#noticedK * this.#interval));
      this.#noticedK += workers;
    }
    while (this.#nextK < this.#noticedK && this.#idle.length > 0) {
      this.#send(this.#idle.pop() as Connection, this.#nextK);
      this.#nextK += workers;
    }
    const backlog = (this.#noticedK - this.#nextK) / workers;
    if (backlog > this.#maxBacklog) this.#maxBacklog = backlog;
    if (this.#nextK >= this.#total && this.#idle.length === this.#all.length) this.#finish();
  }

  #send(connection: Connection, k: number): void {
    const intended = this.#start + k * this.#interval;
    const idIndex = this.#pick();
    connection.k = k;
    connection.idIndex = idIndex;
    connection.intended = intended;
    let request = this.#requests[idIndex] as string;
    connection.hostileKind = "";
    connection.head = false;
    if (this.#job.hostile > 0 && Math.random() < this.#job.hostile) {
      const h = hostileRequest(this.#job.ids[idIndex] as string);
      connection.hostileKind = `${h.kind} ${h.method} ${h.path}`;
      connection.hostileOptions = h.method === "OPTIONS";
      connection.head = h.method === "HEAD";
      const headers = Object.entries(h.headers ?? {})
        .map(([name, value]) => `${name}: ${value}\r\n`)
        .join("");
      request = `${h.method} ${h.path} HTTP/1.1\r\nHost: ${this.#url.host}\r\n${headers}\r\n`;
    }
    connection.sentAt = clock();
    recordMs(this.#sendDelay, connection.sentAt - intended);
    if (connection.sentAt < this.#firstSendAt) this.#firstSendAt = connection.sentAt;
    connection.socket?.write(request);
  }

  #onData(connection: Connection, chunk: string): void {
    connection.buffer = connection.buffer === "" ? chunk : connection.buffer + chunk;
    const text = connection.buffer;
    const end = text.indexOf("\r\n\r\n");
    if (connection.k < 0 || end < 0) return;
    const status = Number(text.slice(9, 12));
    const head = text.slice(0, end).toLowerCase();
    const at = head.indexOf("\r\ncontent-length:");
    const length = connection.head || status === 204 || status === 304 || at < 0 ? 0 : Number.parseInt(head.slice(at + 17), 10);
    if (text.length < end + 4 + length) return;
    const body = text.slice(end + 4, end + 4 + length);
    connection.buffer = text.slice(end + 4 + length);
    this.#complete(connection, status, body);
    if (head.includes("\r\nconnection: close")) this.#fail(connection);
    else this.#idle.push(connection);
    this.#pump();
  }

  #complete(connection: Connection, status: number, body: string): void {
    const doneAt = clock();
    this.#lastDoneAt = doneAt;
    const kind = connection.hostileKind;
    connection.k = -1;
    if (kind !== "") {
      this.#hostile.sent++;
      if ((status >= 400 && status < 500) || (connection.hostileOptions && status === 204)) this.#hostile.refused++;
      else {
        this.#hostile.wrong++;
        if (this.#hostile.examples.length < 10) this.#hostile.examples.push(`${kind} -> ${status} ${body.slice(0, 100)}`);
      }
      return;
    }
    this.#answered += status === 0 ? 0 : 1;
    if (status === 0) this.#errors++;
    const key = String(status);
    this.#statusCounts[key] = (this.#statusCounts[key] ?? 0) + 1;
    recordMs(this.#latency, doneAt - connection.intended);
    recordMs(this.#service, doneAt - connection.sentAt);
    let turno = Number.NaN;
    if (status === 200) {
      const parsed = turnoOf(body, this.#prefixes[connection.idIndex] as string);
      if (parsed === undefined) {
        this.#shapeErrors++;
        if (this.#shapeExamples.length < 10)
          this.#shapeExamples.push(`${this.#job.ids[connection.idIndex]}: ${body.slice(0, 120)}`);
      } else turno = parsed;
    }
    const h = this.#history;
    if (h !== undefined) {
      const i = this.#historyLength++;
      h.id[i] = connection.idIndex;
      h.sentAt[i] = connection.sentAt;
      h.doneAt[i] = doneAt;
      h.status[i] = status;
      h.turno[i] = turno;
    }
  }

  /** A connection failed (reset, closed, timed out): its request counts as an error; reopen it. */
  #fail(connection: Connection): void {
    const socket = connection.socket;
    connection.socket = undefined;
    connection.buffer = "";
    const idle = this.#idle.indexOf(connection);
    if (idle >= 0) this.#idle.splice(idle, 1);
    if (connection.k >= 0) this.#complete(connection, 0, "");
    socket?.end();
    if (this.#finished) return;
    this.#open(connection).then(
      () => this.#pump(),
      () => setTimeout(() => this.#fail(connection), 50),
    );
  }

  #expire(): void {
    const now = clock();
    for (const connection of this.#all)
      if (connection.k >= 0 && now - connection.sentAt > this.#job.timeoutMs) this.#fail(connection);
    // The last requests may never be answered, and a server that went away takes every connection
    // with it: whatever is left after the schedule plus twice the timeout has failed.
    if (now > this.#start + this.#job.seconds * 1000 + this.#job.timeoutMs * 2) this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#timer);
    clearInterval(this.#sweep);
    // Still unanswered after the grace period: timed out (status 0), so the checker allows their numbers as lost.
    for (const connection of this.#all) if (connection.k >= 0) this.#complete(connection, 0, "");
    // Never sent (no connection could be had): failed too, though they cannot have taken a number.
    const unsent = Math.max(0, Math.ceil((this.#total - this.#nextK) / this.#job.workers));
    if (unsent > 0) {
      this.#errors += unsent;
      this.#statusCounts["0"] = (this.#statusCounts["0"] ?? 0) + unsent;
    }
    for (const connection of this.#all) {
      const socket = connection.socket;
      connection.socket = undefined;
      socket?.end();
    }
    const h = this.#history;
    const history =
      h === undefined
        ? undefined
        : {
            length: this.#historyLength,
            id: h.id.slice(0, this.#historyLength),
            sentAt: h.sentAt.slice(0, this.#historyLength),
            doneAt: h.doneAt.slice(0, this.#historyLength),
            status: h.status.slice(0, this.#historyLength),
            turno: h.turno.slice(0, this.#historyLength),
          };
    this.#done({
      latency: encodeHistogram(this.#latency),
      service: encodeHistogram(this.#service),
      lag: encodeHistogram(this.#lag),
      sendDelay: encodeHistogram(this.#sendDelay),
      sent: (this.#nextK - this.#job.index) / this.#job.workers,
      answered: this.#answered,
      errors: this.#errors,
      statusCounts: this.#statusCounts,
      shapeErrors: this.#shapeErrors,
      shapeExamples: this.#shapeExamples,
      hostile: this.#hostile,
      maxBacklog: this.#maxBacklog,
      firstSendAt: this.#firstSendAt,
      lastDoneAt: this.#lastDoneAt,
      history,
    });
  }
}

let run: Run | undefined;
self.onmessage = (event: MessageEvent<WorkerMessage>) => {
  const message = event.data;
  const reply = (r: WorkerReply, transfer: ArrayBuffer[] = []) => self.postMessage(r, transfer);
  if (message.type === "connect") {
    run = new Run(message.job);
    run.connect().then(
      () => reply({ type: "ready" }),
      (error: unknown) => reply({ type: "failed", error: `cannot connect to ${message.job.target}: ${String(error)}` }),
    );
  } else if (message.type === "ping") reply({ type: "pong", at: clock() });
  else if (message.type === "start") {
    run?.start(message.startAt, (report) => {
      const h = report.history;
      const buffers = h === undefined ? [] : [h.id.buffer, h.sentAt.buffer, h.doneAt.buffer, h.status.buffer, h.turno.buffer];
      reply({ type: "done", report }, buffers as ArrayBuffer[]);
      run = undefined;
    });
  } else process.exit(0);
};
