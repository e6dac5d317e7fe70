/**
 * A tiny HTTP/1.1 server over node:net whose answers a test scripts request by request, including
 * the failures a real network produces and Bun.serve cannot: closing the connection without an
 * answer, or answering late. For the client's unit tests (test/unit/client.test.ts); the client's
 * tests against the real service are in test/integration/client.test.ts.
 */
import { createServer, type Server, type Socket } from "node:net";

export interface ScriptedRequest {
  readonly method: string;
  readonly target: string;
  /** Header names lower-cased. */
  readonly headers: Readonly<Record<string, string>>;
  /** performance.now() when the request head was read. */
  readonly at: number;
}

export type ScriptedAnswer =
  | { readonly status: number; readonly body?: string; readonly headers?: Record<string, string>; readonly delayMs?: number }
  | "drop";

export interface ScriptedServer {
  readonly url: string;
  readonly requests: ScriptedRequest[];
  close(): Promise<void>;
}

/** `answer` is called once per request, with the request and how many came before it. */
export async function startScriptedServer(
  answer: (request: ScriptedRequest, index: number) => ScriptedAnswer,
): Promise<ScriptedServer> {
  const requests: ScriptedRequest[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
    let buffer = "";
    socket.on("data", (chunk: Buffer) => {
      buffer += chunk.toString("latin1");
      for (let end = buffer.indexOf("\r\n\r\n"); end !== -1; end = buffer.indexOf("\r\n\r\n")) {
        const head = buffer.slice(0, end);
        buffer = buffer.slice(end + 4);
        const [line = "", ...fields] = head.split("\r\n");
        const [method = "", target = ""] = line.split(" ");
        const headers: Record<string, string> = {};
        for (const field of fields) {
          const colon = field.indexOf(":");
          headers[field.slice(0, colon).trim().toLowerCase()] = field.slice(colon + 1).trim();
        }
        const request = { method, target, headers, at: performance.now() };
        requests.push(request);
        respond(socket, answer(request, requests.length - 1));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function respond(socket: Socket, answer: ScriptedAnswer): void {
  if (answer === "drop") {
    socket.destroy();
    return;
  }
  const body = answer.body ?? "";
  const lines = [`HTTP/1.1 ${answer.status} X`, `content-length: ${Buffer.byteLength(body)}`];
  for (const [name, value] of Object.entries(answer.headers ?? {})) lines.push(`${name}: ${value}`);
  const text = `${lines.join("\r\n")}\r\n\r\n${body}`;
  if (answer.delayMs === undefined) socket.write(text);
  else setTimeout(() => socket.writable && socket.write(text), answer.delayMs);
}

/** A problem document as the service sends it. */
export function problemAnswer(status: number, code: string, retryAfter?: string): ScriptedAnswer {
  return {
    status,
    body: JSON.stringify({ type: `urn:turnomatic:problem:${code}`, title: code, status, detail: `scripted ${code}`, code }),
    headers: { "content-type": "application/problem+json", ...(retryAfter === undefined ? {} : { "retry-after": retryAfter }) },
  };
}

export function jsonAnswer(body: unknown): ScriptedAnswer {
  return { status: 200, body: JSON.stringify(body), headers: { "content-type": "application/json" } };
}
