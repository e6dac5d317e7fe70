/**
 * Closed-loop load of *logical calls* made with @turnomatic/client, run inside the topology's client
 * namespace: `callers` loops, each with one `next(id)` in flight, until `calls` were made. Every
 * logical call is one history entry, from the moment it was started to the moment the caller got its
 * answer, whatever retries it took; status 200 with its turno, or the HTTP status of its final error
 * (0 when it had no HTTP answer). The test judges that history with the history checker.
 *
 * `mode`:
 * - "same-key" (the client as shipped): every retry of a call sends the call's Idempotency-Key.
 * - "fresh-key" (the negative control): the same client with retries off, the caller retrying a
 *   failed call itself with a new key each time (what a caller that does not keep its key does).
 *
 *   bun test/distributed/exactly-once-load.ts '<json options>'
 */
import { writeFileSync } from "node:fs";
import { TurnomaticClient, TurnomaticError, UnavailableError } from "../../client/index.ts";
import { namespaceTargetProblem } from "../../scripts/cluster/netns-guard.ts";
import type { HistoryEntry } from "../../harness/history-checker.ts";

export interface ExactlyOnceLoadOptions {
  readonly url: string;
  readonly out: string;
  readonly ids: readonly string[];
  readonly callers: number;
  readonly calls: number;
  readonly mode: "same-key" | "fresh-key";
  /** Most attempts of one logical call (default 20: more than the LB needs to mark a dead host down). */
  readonly attempts?: number;
}

export interface ExactlyOnceLoadResult {
  readonly history: HistoryEntry[];
  readonly after: Record<string, number>;
  /** HTTP attempts over all calls (> calls when some were retried). */
  readonly attempts: number;
  /** Logical calls that needed more than one attempt. */
  readonly retried: number;
  /** Final error codes of the calls that failed, counted. */
  readonly errors: Record<string, number>;
  readonly startedAt: number;
  readonly endedAt: number;
}

const now = () => performance.timeOrigin + performance.now();
const RETRY = { baseDelayMs: 50, maxDelayMs: 500, totalMs: 30_000 };

async function main(options: ExactlyOnceLoadOptions): Promise<void> {
  const attemptsPerCall = options.attempts ?? 20;
  const client = new TurnomaticClient({
    baseUrl: options.url,
    timeoutMs: 5000,
    retry: options.mode === "same-key" ? { ...RETRY, attempts: attemptsPerCall } : { ...RETRY, attempts: 1 },
  });
  const history: HistoryEntry[] = [];
  const errors: Record<string, number> = {};
  let attempts = 0;
  let retried = 0;
  let next = 0;
  const startedAt = now();
  const progress = setInterval(() => process.stdout.write(`progress ${history.length}\n`), 250);

  /** One logical call; "fresh-key" retries it here with a new key per attempt. */
  const call = async (id: string): Promise<HistoryEntry> => {
    const sentAt = now();
    for (let attempt = 1; ; attempt++) {
      try {
        const turn = await client.next(id);
        attempts += turn.attempts;
        if (turn.attempts > 1 || attempt > 1) retried++;
        return { id, sentAt, doneAt: now(), status: 200, turno: turn.turno };
      } catch (error) {
        const unavailable = error instanceof UnavailableError;
        attempts += unavailable ? error.attempts : 1;
        if (options.mode === "fresh-key" && unavailable && attempt < attemptsPerCall) {
          await Bun.sleep(RETRY.baseDelayMs * Math.min(8, attempt));
          continue;
        }
        const code = error instanceof TurnomaticError ? error.code : String(error);
        errors[code] = (errors[code] ?? 0) + 1;
        return { id, sentAt, doneAt: now(), status: error instanceof TurnomaticError ? error.status : 0 };
      }
    }
  };
  const caller = async (index: number) => {
    let k = index;
    while (next < options.calls) {
      next++;
      history.push(await call(options.ids[k++ % options.ids.length] as string));
    }
  };
  await Promise.all(Array.from({ length: options.callers }, (_, i) => caller(i)));
  clearInterval(progress);
  const endedAt = now();
  const after: Record<string, number> = {};
  for (const id of options.ids) after[id] = (await client.actual(id)).turno;
  const result: ExactlyOnceLoadResult = { history, after, attempts, retried, errors, startedAt, endedAt };
  writeFileSync(options.out, JSON.stringify(result));
  process.stdout.write(`done ${history.length}\n`);
}

if (import.meta.main) {
  const arg = process.argv[2];
  if (arg === undefined || arg === "--help" || arg === "-h") {
    process.stdout.write(
      "usage: ip netns exec tm-client bun test/distributed/exactly-once-load.ts '<json ExactlyOnceLoadOptions>'\n",
    );
    process.exit(arg === undefined ? 2 : 0);
  }
  const options = JSON.parse(arg) as ExactlyOnceLoadOptions;
  const problem = namespaceTargetProblem(options.url);
  if (problem !== undefined) {
    process.stderr.write(`exactly-once-load: ${problem}\n`);
    process.exit(2);
  }
  await main(options);
}
