/**
 * The nemesis workload, run inside the topology's client namespace for the whole run, through the LB:
 * - "raw": plain GET turns on our own keep-alive client, which never resends a request;
 * - "fetch": plain GET turns on Bun's fetch, which replays a GET on its own when a keep-alive
 *   connection drops (a client that replays: its lost numbers are silent gaps, judged by the ledger);
 * - "keyed": POST with an Idempotency-Key, retried with the same key after a failure, and sometimes
 *   replayed after a success (the replay must get the same number);
 * - "admin": admin set (PUT) and reset (DELETE) of the admin ids at moments drawn from the seed. The
 *   workload quiesces the id first (no request of its own in flight for it), retries an operation
 *   that failed until it succeeds (both are idempotent) after waiting out any straggler, and records
 *   when it took effect: the judge splits each id's history there (epochs).
 * Each class has its own ids (a few hot ones take most requests, many cool ones the rest), so that a
 * replaying client's silent gaps never hide in the history of a client that must have none.
 *
 * - "batch": batch turns, `POST /turno/:id?count=k` (k from 1 to 20) -> {"id","first","last"}.
 * - "daily" (an admin operation too): a daily reset (`PUT /admin/turno/:id/schedule`) at the start
 *   of a UTC minute a little ahead; the id is quiesced across that boundary as for set/reset, and the
 *   operation is recorded when the workload has seen, after the boundary, that the store is in the
 *   new day (`/actual` names it, with a number below the old day's). When it is not (the PUT never
 *   succeeded, the store lost the schedule with its data, a late copy of the PUT restarted the day in
 *   progress), the workload resets the id itself, so the boundary is there anyway.
 *
 *   bun test/nemesis/workload.ts run '<json WorkloadOptions>'
 *   bun test/nemesis/workload.ts read '<json ReadOptions>'     (counters and ledgers after the run)
 */
import { writeFileSync } from "node:fs";
import { namespaceTargetProblem } from "../../scripts/cluster/netns-guard.ts";
import type { HistoryEntry } from "../../harness/history-checker.ts";
import { RawKeepAliveConnection } from "../../harness/raw-keepalive-client.ts";
import { prng } from "./schedule.ts";

export type ClientClass = "raw" | "fetch" | "keyed" | "admin" | "batch";

/** One request as the history checker reads it (a batch turn's range included), plus who sent it. */
export interface WorkloadEntry extends HistoryEntry {
  readonly cls: ClientClass;
  /** Idempotency-Key of a keyed request. */
  readonly key?: string;
  /** Problem code of a failed request. */
  readonly code?: string;
}

export interface AdminOp {
  readonly id: string;
  readonly op: "set" | "reset" | "daily";
  /** set: the counter's new value (the next turn is value + 1); reset and daily: 0. */
  readonly value: number;
  /** Send time of the attempt that succeeded, and its completion. */
  readonly sentAt: number;
  readonly doneAt: number;
  /** Attempts that failed before it (each followed by a straggler wait). */
  readonly failedAttempts: number;
  /** False when requests of the workload for this id were still in flight (the quiesce timed out). */
  readonly quiesced: boolean;
  /**
   * False when no attempt succeeded before the run ended: the id's counter after it is unknown (set,
   * reset or unchanged); the judge then starts the epoch at 0 (sentAt is the first attempt's).
   */
  readonly confirmed?: boolean;
}

export interface IdSets {
  readonly raw: readonly string[];
  readonly fetch: readonly string[];
  readonly keyed: readonly string[];
  readonly admin: readonly string[];
  readonly batch: readonly string[];
  /** How many of each list (its first ones) are hot. */
  readonly hot: number;
}

export interface WorkloadOptions {
  readonly url: string;
  readonly adminToken: string;
  readonly seed: number;
  readonly durationMs: number;
  readonly ids: IdSets;
  readonly clients: { readonly raw: number; readonly fetch: number; readonly keyed: number; readonly batch: number };
  /** Admin operations on or off (the "admin" fault kind). */
  readonly admin: boolean;
  /** Mean time between two admin operations (ms). */
  readonly adminMeanGapMs: number;
  /** No admin operation in the last ms of the run. */
  readonly adminTailMs: number;
  readonly timeoutMs: number;
  /** Pause of each client between requests (ms). */
  readonly pauseMs: number;
  readonly out: string;
}

export interface WorkloadResult {
  readonly entries: WorkloadEntry[];
  readonly adminOps: AdminOp[];
  readonly startedAt: number;
  readonly endedAt: number;
}

export interface ReadOptions {
  readonly url: string;
  readonly adminToken: string;
  readonly ids: readonly string[];
  readonly out: string;
}

export interface Ledger {
  readonly id: string;
  readonly issued: number;
  readonly delivered: number;
  readonly lost: number;
}

/** GET /turno/:id/actual's answer. */
interface CounterRead {
  readonly turno: number;
  readonly dayStart?: string;
}

export interface ReadResult {
  readonly actual: Record<string, number>;
  readonly ledgers: Record<string, Ledger>;
}

/** Longer than any pause of a host (3 s) plus HAProxy's server timeout (5 s): a late request is done by then. */
const STRAGGLER_WAIT_MS = 12_000;
const now = () => performance.timeOrigin + performance.now();

function problemCode(body: string): string | undefined {
  try {
    return (JSON.parse(body) as { code?: string }).code;
  } catch {
    return undefined;
  }
}

function entryOf(
  cls: ClientClass,
  id: string,
  sentAt: number,
  answer: { status: number; body: string } | undefined,
  key?: string,
  count?: number,
): WorkloadEntry {
  const doneAt = now();
  const extra = { ...(key === undefined ? {} : { key }), ...(count === undefined ? {} : { count }) };
  if (answer === undefined) return { id, cls, sentAt, doneAt, status: 0, ...extra };
  if (answer.status !== 200) return { id, cls, sentAt, doneAt, status: answer.status, code: problemCode(answer.body), ...extra };
  const body = JSON.parse(answer.body) as { id: string; turno?: number; first?: number; last?: number };
  if (body.id !== id) throw new Error(`response for ${id} names id ${body.id}`);
  if (count !== undefined) return { id, cls, sentAt, doneAt, status: 200, first: body.first, last: body.last, ...extra };
  return { id, cls, sentAt, doneAt, status: 200, turno: body.turno, ...extra };
}

async function fetchAnswer(url: string, init: RequestInit, timeoutMs: number) {
  try {
    const response = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    return { status: response.status, body: await response.text() };
  } catch {
    return undefined;
  }
}

export async function runWorkload(options: WorkloadOptions, stop: () => boolean): Promise<WorkloadResult> {
  const entries: WorkloadEntry[] = [];
  const adminOps: AdminOp[] = [];
  const startedAt = now();
  const stopAt = startedAt + options.durationMs;
  const running = () => now() < stopAt && !stop();
  const inFlight = new Map<string, number>();
  const paused = new Set<string>();
  const track = (id: string, delta: number) => inFlight.set(id, (inFlight.get(id) ?? 0) + delta);
  const { ids } = options;
  /** 70% of requests on the hot ids, the rest spread over the cool ones. */
  const chooser = (list: readonly string[], random: () => number) => () => {
    const hot = Math.min(ids.hot, list.length);
    const pool = random() < 0.7 || list.length === hot ? list.slice(0, hot) : list.slice(hot);
    return pool[Math.floor(random() * pool.length)] as string;
  };
  /** After a failure a client backs off (as a real one would), so a dead LB is not hammered. */
  const pause = (failed = false) =>
    failed ? Bun.sleep(50) : options.pauseMs > 0 ? Bun.sleep(options.pauseMs) : Promise.resolve();

  const rawClient = async (index: number) => {
    const random = prng(options.seed * 31 + index);
    const plain = chooser(ids.raw, random);
    const admin = chooser(ids.admin, random);
    const connection = new RawKeepAliveConnection(options.url);
    while (running()) {
      let id = ids.admin.length > 0 && random() < 0.15 ? admin() : plain();
      if (paused.has(id)) id = plain();
      const cls: ClientClass = ids.admin.includes(id) ? "admin" : "raw";
      track(id, 1);
      const sentAt = now();
      const answer = await connection.request(`/turno/${id}`, options.timeoutMs);
      const entry = entryOf(cls, id, sentAt, answer);
      entries.push(entry);
      track(id, -1);
      await pause(entry.status !== 200);
    }
  };
  const fetchClient = async (index: number) => {
    const random = prng(options.seed * 37 + index);
    const choose = chooser(ids.fetch, random);
    while (running()) {
      const id = choose();
      const sentAt = now();
      const entry = entryOf("fetch", id, sentAt, await fetchAnswer(`${options.url}/turno/${id}`, {}, options.timeoutMs));
      entries.push(entry);
      await pause(entry.status !== 200);
    }
  };
  const keyedClient = async (index: number) => {
    const random = prng(options.seed * 41 + index);
    const choose = chooser(ids.keyed, random);
    let serial = 0;
    while (running()) {
      const id = choose();
      const key = `k${options.seed}-${index}-${serial++}`;
      const send = async () => {
        const sentAt = now();
        const answer = await fetchAnswer(
          `${options.url}/turno/${id}`,
          { method: "POST", headers: { "idempotency-key": key } },
          options.timeoutMs,
        );
        const entry = entryOf("keyed", id, sentAt, answer, key);
        entries.push(entry);
        return entry;
      };
      let entry = await send();
      // Retries of the same key after a failure (the key's number, if any, must come back).
      for (let attempt = 1; attempt <= 3 && entry.turno === undefined && entry.status !== 400 && running(); attempt++) {
        await Bun.sleep(100 * attempt);
        entry = await send();
      }
      // A replay of a key that already got its number: the same number, never a new one.
      if (entry.turno !== undefined && random() < 0.15) await send();
      await pause(entry.status !== 200);
    }
  };
  /** Batch turns (`POST /turno/:id?count=k`, k from 1 to 20): all-or-nothing ranges. */
  const batchClient = async (index: number) => {
    const random = prng(options.seed * 43 + index);
    const choose = chooser(ids.batch, random);
    while (running()) {
      const id = choose();
      const count = 1 + Math.floor(random() * 20);
      const sentAt = now();
      const answer = await fetchAnswer(`${options.url}/turno/${id}?count=${count}`, { method: "POST" }, options.timeoutMs);
      const entry = entryOf("batch", id, sentAt, answer, undefined, count);
      entries.push(entry);
      await pause(entry.status !== 200);
    }
  };
  const adminHeaders = { authorization: `Bearer ${options.adminToken}`, "content-type": "application/json" };
  /** Quiesces `id`: no new request of the workload for it, and waits (up to 15 s) for those in flight. */
  const quiesce = async (id: string) => {
    paused.add(id);
    const until = now() + 15_000;
    while ((inFlight.get(id) ?? 0) > 0 && now() < until) await Bun.sleep(5);
    return (inFlight.get(id) ?? 0) === 0;
  };
  /** An admin set or reset of a quiesced id, retried until it succeeds; recorded either way. */
  const setOrReset = async (id: string, op: "set" | "reset", value: number, quiesced: boolean) => {
    let failedAttempts = 0;
    const firstSentAt = now();
    for (;;) {
      // The run ended while the operation kept failing (a halted store refuses it): whether an
      // attempt took effect is unknown, and the judge starts an epoch of unknown start there.
      if (!running()) {
        adminOps.push({ id, op, value, sentAt: firstSentAt, doneAt: now(), failedAttempts, quiesced, confirmed: false });
        return;
      }
      const sentAt = now();
      const answer = await fetchAnswer(
        `${options.url}/admin/turno/${id}`,
        {
          method: op === "set" ? "PUT" : "DELETE",
          headers: adminHeaders,
          ...(op === "set" ? { body: JSON.stringify({ turno: value }) } : {}),
        },
        options.timeoutMs,
      );
      const doneAt = now();
      if (answer !== undefined && answer.status >= 200 && answer.status < 300) {
        adminOps.push({ id, op, value, sentAt, doneAt, failedAttempts, quiesced, confirmed: true });
        return;
      }
      // The failed attempt may still be applied late (a paused host): wait it out, then pin the
      // state with another attempt; only the last, successful one is recorded as the boundary.
      failedAttempts++;
      const until = now() + STRAGGLER_WAIT_MS;
      while (now() < until && running()) await Bun.sleep(100);
    }
  };
  /** GET /turno/:id/actual: the last number and, for a scheduled id, the start of its day. */
  const readActual = async (id: string): Promise<CounterRead | undefined> => {
    const answer = await fetchAnswer(`${options.url}/turno/${id}/actual`, {}, options.timeoutMs);
    if (answer?.status !== 200) return undefined;
    return JSON.parse(answer.body) as CounterRead;
  };
  /**
   * A daily reset at the start of a UTC minute far enough ahead to set the schedule and drain the id
   * before it. False when the run ends too soon for one.
   */
  const dailyReset = async (id: string, lastAt: number): Promise<boolean> => {
    const boundary = Math.ceil((now() + options.timeoutMs + 20_000) / 60_000) * 60_000;
    if (boundary + 5000 >= lastAt) return false;
    const daily = new Date(boundary).toISOString().slice(11, 16);
    const url = `${options.url}/admin/turno/${id}/schedule`;
    const drainAt = boundary - options.timeoutMs - 2000;
    let scheduled = false;
    while (!scheduled && now() < drainAt && running()) {
      const body = JSON.stringify({ daily, timeZone: "UTC" });
      const answer = await fetchAnswer(url, { method: "PUT", headers: adminHeaders, body }, options.timeoutMs);
      scheduled = answer?.status === 200;
      if (!scheduled) await Bun.sleep(1000);
    }
    while (now() < drainAt && running()) await Bun.sleep(50);
    const quiesced = await quiesce(id);
    // Nothing of the workload's own is in flight for the id across the boundary (a request that timed
    // out may still be applied late: a gap, counted as failed). The old day's last number, just
    // before the boundary:
    let before: CounterRead | undefined;
    while (before === undefined && now() < boundary - 500 && running()) {
      before = await readActual(id);
      if (before === undefined) await Bun.sleep(200);
    }
    while (now() < boundary + 500 && running()) await Bun.sleep(20);
    if (!running()) return true;
    // The store is in the new day when it names the boundary as the day's start with a number below
    // the old day's last (0 when no turn came since). Not when the schedule is gone (an empty
    // restart), or when a late copy of the PUT, applied after the boundary, restarted the day in
    // progress (the number then goes on from the old day's): then the workload resets the id itself.
    const sentAt = now();
    const after = await readActual(id);
    const newDay =
      before !== undefined &&
      after?.dayStart === new Date(boundary).toISOString() &&
      (after.turno === 0 || after.turno < before.turno);
    if (scheduled && newDay)
      adminOps.push({ id, op: "daily", value: 0, sentAt, doneAt: now(), failedAttempts: 0, quiesced, confirmed: true });
    else await setOrReset(id, "reset", 0, quiesced);
    return true;
  };
  const adminLoop = async () => {
    if (!options.admin || ids.admin.length === 0) return;
    const random = prng(options.seed ^ 0x5eed5eed);
    const lastAt = stopAt - options.adminTailMs;
    while (running()) {
      const gap = Math.round(-Math.log(1 - random()) * options.adminMeanGapMs);
      if (now() + gap >= lastAt) break;
      await Bun.sleep(gap);
      const id = ids.admin[Math.floor(random() * ids.admin.length)] as string;
      const draw = random();
      const op: AdminOp["op"] = draw < 0.2 ? "daily" : draw < 0.6 ? "set" : "reset";
      const value = op === "set" ? 1000 + Math.floor(random() * 1_000_000) : 0;
      if (op === "daily") {
        if (!(await dailyReset(id, lastAt))) await setOrReset(id, "reset", 0, await quiesce(id));
      } else {
        await setOrReset(id, op, value, await quiesce(id));
      }
      paused.delete(id);
    }
  };

  const progress = setInterval(() => process.stdout.write(`progress ${entries.length}\n`), 1000);
  await Promise.all([
    ...Array.from({ length: options.clients.raw }, (_, i) => rawClient(i)),
    ...Array.from({ length: options.clients.fetch }, (_, i) => fetchClient(i)),
    ...Array.from({ length: options.clients.keyed }, (_, i) => keyedClient(i)),
    ...Array.from({ length: options.clients.batch }, (_, i) => batchClient(i)),
    adminLoop(),
  ]);
  clearInterval(progress);
  return { entries, adminOps, startedAt, endedAt: now() };
}

async function readAll(options: ReadOptions): Promise<ReadResult> {
  const actual: Record<string, number> = {};
  const ledgers: Record<string, Ledger> = {};
  const headers = { authorization: `Bearer ${options.adminToken}` };
  for (const id of options.ids) {
    for (let attempt = 0; ; attempt++) {
      try {
        const a = await fetch(`${options.url}/turno/${id}/actual`, { signal: AbortSignal.timeout(5000) });
        const l = await fetch(`${options.url}/admin/turno/${id}/ledger`, { headers, signal: AbortSignal.timeout(5000) });
        if (a.status !== 200 || l.status !== 200) throw new Error(`actual ${a.status}, ledger ${l.status}`);
        actual[id] = ((await a.json()) as { turno: number }).turno;
        ledgers[id] = (await l.json()) as Ledger;
        break;
      } catch (error) {
        if (attempt >= 20) throw new Error(`reading ${id} after the run: ${String(error)}`);
        await Bun.sleep(500);
      }
    }
  }
  return { actual, ledgers };
}

if (import.meta.main) {
  const [mode, arg] = process.argv.slice(2);
  if (mode === undefined || mode === "--help" || mode === "-h" || arg === undefined) {
    process.stdout.write(
      "usage: ip netns exec <client namespace> bun test/nemesis/workload.ts run|read '<json options>' (started by npm run test:nemesis)\n",
    );
    process.exit(mode === "--help" || mode === "-h" ? 0 : 2);
  }
  const options = JSON.parse(arg) as WorkloadOptions & ReadOptions;
  const problem = namespaceTargetProblem(options.url);
  if (problem !== undefined) {
    process.stderr.write(`workload: ${problem}\n`);
    process.exit(2);
  }
  if (mode === "read") {
    writeFileSync(options.out, JSON.stringify(await readAll(options)));
  } else {
    let stopRequested = false;
    process.on("SIGTERM", () => {
      stopRequested = true;
    });
    const result = await runWorkload(options, () => stopRequested);
    writeFileSync(options.out, JSON.stringify(result));
    process.stdout.write(`done ${result.entries.length}\n`);
  }
}
