/**
 * A raw HTTP/1.1 exchange over a TCP socket, for requests no well-behaved client would send:
 * the bytes go out exactly as given, and whatever comes back (or the connection closing) is
 * reported without interpretation beyond the status line and Content-Length.
 */
import { connect } from "node:net";

export interface RawAnswer {
  /** Status of the first response, or null when the server closed (or stayed silent) without one. */
  readonly status: number | null;
  /** Everything received, as latin1 text. */
  readonly raw: string;
  /** The server closed the connection (rather than our timeout ending the exchange). */
  readonly closedByServer: boolean;
  readonly timedOut: boolean;
  readonly ms: number;
}

export interface RawOptions {
  readonly timeoutMs?: number;
  /** Send the bytes in pieces with this many ms between them (slowloris). */
  readonly trickleMs?: number;
  readonly chunkBytes?: number;
}

/** Whether `raw` holds one complete response (headers plus Content-Length body, or a body-less one). */
function complete(raw: string): boolean {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) return false;
  const length = /\r\ncontent-length:\s*(\d+)/i.exec(raw.slice(0, end));
  if (length === null) return !/\r\ntransfer-encoding:\s*chunked/i.test(raw.slice(0, end)) || raw.endsWith("0\r\n\r\n");
  return raw.length - (end + 4) >= Number(length[1]);
}

export function rawExchange(port: number, bytes: string | Uint8Array, options: RawOptions = {}): Promise<RawAnswer> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const data = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : Buffer.from(bytes);
  const started = performance.now();
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let raw = "";
    let settled = false;
    let timedOut = false;
    const finish = (closedByServer: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(raw);
      resolve({
        status: match === null ? null : Number(match[1]),
        raw,
        closedByServer,
        timedOut,
        ms: performance.now() - started,
      });
    };
    const timer = setTimeout(() => {
      timedOut = true;
      finish(false);
    }, timeoutMs);
    socket.on("data", (chunk: Buffer) => {
      raw += chunk.toString("latin1");
      if (complete(raw)) finish(false);
    });
    socket.on("error", () => finish(true));
    socket.on("close", () => finish(true));
    socket.on("connect", async () => {
      if (options.trickleMs === undefined) {
        socket.write(data);
        return;
      }
      const size = options.chunkBytes ?? 1;
      for (let i = 0; i < data.length && !settled; i += size) {
        socket.write(data.subarray(i, i + size));
        await Bun.sleep(options.trickleMs);
      }
    });
  });
}

/** A well-formed request line and headers, for building variations. */
export function request(method: string, target: string, headers: readonly string[] = [], body = ""): string {
  return `${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers.map((h) => `${h}\r\n`).join("")}\r\n${body}`;
}
