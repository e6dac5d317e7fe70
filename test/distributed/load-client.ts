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
import { namespaceTargetProblem } from "../../scripts/cluster/netns-guard.ts";
import type { HistoryEntry } from "../../harness/history-checker.ts";
import { RawKeepAliveConnection } from "../../harness/raw-keepalive-client.ts";

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

/**
 * The id's counter after the run (GET /actual), asked until it answers 200 for up to 15 s: right after
 * a fault a host may still answer 503 (its store reconnecting) or not at all.
 */
async function currentTurn(url: string, id: string): Promise<number> {
  const connection = fetchConnection(url);
  const until = performance.now() + 15_000;
  let last = "";
  while (performance.now() < until) {
    const answer = await connection.request(`/turno/${id}/actual`, 5000);
    if (answer?.status === 200) return (JSON.parse(answer.body) as { turno: number }).turno;
    last = answer === undefined ? "no answer" : `${answer.status} ${answer.body.slice(0, 200)}`;
    await Bun.sleep(200);
  }
  throw new Error(`GET /turno/${id}/actual never answered 200 in 15 s (last: ${last})`);
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
    const connection = options.client === "fetch" ? fetchConnection(options.url) : new RawKeepAliveConnection(options.url);
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
  for (const id of options.ids) after[id] = await currentTurn(options.url, id);
  const result: LoadClientResult = { history, after, startedAt, endedAt };
  writeFileSync(options.out, JSON.stringify(result));
  process.stdout.write(`done ${history.length}\n`);
}

if (import.meta.main) {
  const arg = process.argv[2];
  if (arg === undefined || arg === "--help" || arg === "-h") {
    process.stdout.write("usage: ip netns exec tm-client bun test/distributed/load-client.ts '<json LoadClientOptions>'\n");
    process.exit(arg === undefined ? 2 : 0);
  }
  const options = JSON.parse(arg) as LoadClientOptions;
  const problem = namespaceTargetProblem(options.url);
  if (problem !== undefined) {
    process.stderr.write(`load-client: ${problem}\n`);
    process.exit(2);
  }
  await main(options);
}
