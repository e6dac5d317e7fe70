/**
 * A deliberately broken turn service for proving the load-test suite catches violations. It speaks
 * the API (GET /turno/:id, GET /turno/:id/actual) but, every `every` turns per id:
 * - duplicate: hands out the previous number again (I1);
 * - skip: jumps one number (I2);
 * - reorder: holds a number back and hands it out 5 turns later, after larger ones completed (I3).
 */
import type { Server } from "bun";

export type Breakage = "duplicate" | "skip" | "reorder" | "none";

export interface BrokenService {
  readonly url: string;
  stop(): void;
}

export function startBrokenService(breakage: Breakage, every = 50, port = 0): BrokenService {
  const counters = new Map<string, { last: number; turns: number; held: number[] }>();
  const body = (id: string, turno: number) =>
    new Response(`{"id":"${id}","turno":${turno}}`, {
      headers: { "content-type": "application/json", "cache-control": "no-store" },
    });
  const server: Server<undefined> = Bun.serve({
    port,
    hostname: "127.0.0.1",
    fetch(request) {
      const path = new URL(request.url).pathname;
      const match = /^\/turno\/([A-Za-z0-9_-]{1,64})(\/actual)?$/.exec(path);
      if (match === null) return new Response("not found", { status: 404 });
      const id = match[1] as string;
      const counter = counters.get(id) ?? { last: 0, turns: 0, held: [] };
      counters.set(id, counter);
      if (match[2] !== undefined) return body(id, counter.last);
      counter.turns++;
      const due = counter.turns % every === 0;
      if (breakage === "duplicate" && due && counter.last > 0) return body(id, counter.last);
      if (breakage === "skip" && due) counter.last++;
      if (breakage === "reorder") {
        if (due) counter.held.push(++counter.last);
        if (counter.turns % every === 5 && counter.held.length > 0) return body(id, counter.held.shift() as number);
      }
      return body(id, ++counter.last);
    },
  });
  return { url: `http://127.0.0.1:${server.port}`, stop: () => server.stop(true) };
}
