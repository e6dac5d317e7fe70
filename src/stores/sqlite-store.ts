/**
 * The embedded default store: SQLite through bun:sqlite, in WAL mode with synchronous=FULL, so every
 * reservation is committed and fsynced before any of its numbers is returned.
 *
 * Group commit: bun:sqlite is synchronous, and an fsync per reservation would cap throughput at the
 * disk's flush rate. Reservations asked for in one event-loop turn (for any ids) are applied in one
 * IMMEDIATE transaction and one fsync, then all resolved. Several processes may share the file: the
 * IMMEDIATE transaction takes the write lock first, and busy_timeout bounds the wait for it.
 */
import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import type { CounterSnapshot, CounterStore, Fence, IdempotentReservation, Reservation } from "../domain/counter-store.ts";
import { StoreUnavailableError } from "../domain/errors.ts";
import { planReservation } from "../domain/plan-reservation.ts";
import { WriteHealth, type WriteHealthObserver } from "./write-health.ts";

export interface SqliteStoreOptions {
  /** Path of the database file; its directory is created if missing. */
  readonly path: string;
  /** How long a transaction waits for another process's write lock (ms). */
  readonly busyTimeoutMs: number;
  /** Told when writes start failing (disk full, I/O error, read-only) and when they work again. */
  readonly onWriteHealth?: WriteHealthObserver;
  /** After this long without a write, a TRUNCATE checkpoint empties the WAL file. Default 10 s. */
  readonly idleCheckpointMs?: number;
}

interface PendingOp {
  readonly run: () => Reservation | IdempotentReservation;
  readonly resolve: (result: Reservation | IdempotentReservation) => void;
  readonly reject: (error: Error) => void;
}

const EMPTY: CounterSnapshot = { value: 0, epoch: 0 };

/** How long opening the store keeps retrying while another process holds the file's lock. */
const STARTUP_BUSY_MS = 10_000;

/**
 * WAL bounds (docs/operations.md, "SQLite disk"): SQLite checkpoints after a commit once the WAL
 * holds this many pages (4 KiB each), and truncates the WAL file back to JOURNAL_SIZE_LIMIT when it
 * restarts it, so a burst does not keep its disk. When no write came for IDLE_CHECKPOINT_MS (the
 * default of the idleCheckpointMs option), a TRUNCATE checkpoint empties the WAL file entirely.
 */
const WAL_AUTOCHECKPOINT_PAGES = 1000;
const JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024;
const IDLE_CHECKPOINT_MS = 10_000;
/** While writes fail, ping() tries one small write at most this often (readiness recovers when idle). */
const PROBE_INTERVAL_MS = 1000;

/** Runs `step`, again every 10 ms while SQLite answers SQLITE_BUSY, for at most `timeoutMs`. */
function retryWhileBusy(step: () => unknown, timeoutMs: number): void {
  const giveUpAt = performance.now() + timeoutMs;
  for (;;) {
    try {
      step();
      return;
    } catch (error) {
      const busy = (error as { code?: string }).code?.startsWith("SQLITE_BUSY") === true;
      if (!busy || performance.now() >= giveUpAt) throw error;
      Bun.sleepSync(10);
    }
  }
}

export class SqliteStore implements CounterStore {
  readonly kind = "sqlite";
  readonly #db: Database;
  readonly #path: string;
  readonly #select;
  readonly #upsert;
  readonly #selectKey;
  readonly #insertKey;
  readonly #pruneKeys;
  #pending: PendingOp[] = [];
  #scheduled = false;
  #closed = false;
  readonly #health: WriteHealth;
  readonly #busyTimeoutMs: number;
  readonly #checkpointTimer: ReturnType<typeof setInterval> | undefined;
  readonly #idleCheckpointMs: number;
  #lastWriteAt = 0;
  #wroteSinceCheckpoint = false;
  #lastProbeAt = Number.NEGATIVE_INFINITY;

  constructor(options: SqliteStoreOptions) {
    this.#path = options.path;
    this.#health = new WriteHealth(options.onWriteHealth);
    this.#busyTimeoutMs = Math.trunc(options.busyTimeoutMs);
    this.#idleCheckpointMs = options.idleCheckpointMs ?? IDLE_CHECKPOINT_MS;
    if (options.path !== ":memory:") mkdirSync(dirname(options.path), { recursive: true });
    const db = new Database(options.path, { create: true, strict: true });
    this.#db = db;
    db.run(`PRAGMA busy_timeout = ${Math.trunc(options.busyTimeoutMs)}`);
    // Several workers may open a new file at once. Switching to WAL and creating the tables can then
    // answer SQLITE_BUSY at once, without waiting (SQLite's deadlock avoidance skips busy_timeout),
    // so these steps are retried for a while; the tables are created under the write lock.
    retryWhileBusy(() => db.run("PRAGMA journal_mode = WAL"), STARTUP_BUSY_MS);
    db.run("PRAGMA synchronous = FULL");
    db.run(`PRAGMA wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    db.run(`PRAGMA journal_size_limit = ${JOURNAL_SIZE_LIMIT}`);
    retryWhileBusy(
      () =>
        db
          .transaction(() => {
            db.run(
              "CREATE TABLE IF NOT EXISTS counters (id TEXT PRIMARY KEY, value INTEGER NOT NULL, epoch INTEGER NOT NULL) WITHOUT ROWID",
            );
            db.run(
              "CREATE TABLE IF NOT EXISTS idempotency_keys (id TEXT NOT NULL, key TEXT NOT NULL, turno INTEGER NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (id, key)) WITHOUT ROWID",
            );
          })
          .immediate(),
      STARTUP_BUSY_MS,
    );
    this.#select = this.#db.query<CounterSnapshot, [string]>("SELECT value, epoch FROM counters WHERE id = ?");
    this.#upsert = this.#db.query<unknown, [string, number, number]>(
      "INSERT INTO counters (id, value, epoch) VALUES (?1, ?2, ?3) ON CONFLICT (id) DO UPDATE SET value = excluded.value, epoch = excluded.epoch",
    );
    this.#selectKey = this.#db.query<{ turno: number }, [string, string, number]>(
      "SELECT turno FROM idempotency_keys WHERE id = ? AND key = ? AND expires_at > ?",
    );
    this.#insertKey = this.#db.query<unknown, [string, string, number, number]>(
      "INSERT OR REPLACE INTO idempotency_keys (id, key, turno, expires_at) VALUES (?, ?, ?, ?)",
    );
    this.#pruneKeys = this.#db.query<unknown, [number]>("DELETE FROM idempotency_keys WHERE expires_at <= ?");
    if (options.path !== ":memory:") {
      this.#checkpointTimer = setInterval(() => this.#checkpointWhenIdle(), this.#idleCheckpointMs);
      this.#checkpointTimer.unref();
    }
  }

  reserve(id: string, n: number, fence?: Fence): Promise<Reservation> {
    return this.#enqueue(() => {
      const plan = planReservation(this.#read(id), n, fence);
      if (plan.count > 0 || plan.fenced) this.#upsert.run(id, plan.next.value, plan.next.epoch);
      return { first: plan.first, count: plan.count, epoch: plan.epoch, fenced: plan.fenced };
    });
  }

  reserveIdempotent(id: string, key: string, ttlSeconds: number, fence?: Fence): Promise<IdempotentReservation> {
    return this.#enqueue(() => {
      const now = Date.now();
      const snapshot = this.#read(id);
      const seen = this.#selectKey.get(id, key, now);
      if (seen !== null) return { first: seen.turno, count: 1, epoch: snapshot.epoch, fenced: false, replayed: true };
      const plan = planReservation(snapshot, 1, fence);
      if (plan.count > 0) {
        this.#upsert.run(id, plan.next.value, plan.next.epoch);
        this.#insertKey.run(id, key, plan.first, now + ttlSeconds * 1000);
      }
      return { first: plan.first, count: plan.count, epoch: plan.epoch, fenced: plan.fenced, replayed: false };
    }) as Promise<IdempotentReservation>;
  }

  async peek(id: string): Promise<CounterSnapshot> {
    this.#assertOpen();
    return this.#read(id);
  }

  async set(id: string, value: number): Promise<CounterSnapshot> {
    this.#assertOpen();
    return this.#db
      .transaction(() => {
        const next = { value, epoch: this.#read(id).epoch + 1 };
        this.#upsert.run(id, next.value, next.epoch);
        return next;
      })
      .immediate();
  }

  async ping(): Promise<void> {
    this.#assertOpen();
    if (this.#health.failing) this.#probeWrite();
    this.#db.query("SELECT 1").get();
  }

  async durabilityWarnings(): Promise<string[]> {
    return this.#path === ":memory:" ? ["sqlite store on ':memory:': nothing survives a restart"] : [];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#commit();
    this.#closed = true;
    clearInterval(this.#checkpointTimer);
    this.#pruneKeys.run(Date.now());
    this.#db.close();
  }

  #read(id: string): CounterSnapshot {
    return this.#select.get(id) ?? EMPTY;
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreUnavailableError("the SQLite store is closed");
  }

  #enqueue<T extends Reservation>(run: () => T): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError("the SQLite store is closed"));
    return new Promise<T>((resolve, reject) => {
      this.#pending.push({ run, resolve: resolve as PendingOp["resolve"], reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#commit());
      }
    });
  }

  /** Applies every pending reservation in one transaction (one fsync), then answers them all. */
  #commit(): void {
    this.#scheduled = false;
    const ops = this.#pending;
    if (ops.length === 0) return;
    this.#pending = [];
    let results: Array<Reservation | IdempotentReservation>;
    try {
      results = this.#db.transaction(() => ops.map((op) => op.run())).immediate();
    } catch (error) {
      this.#health.failed(error);
      const failure = new StoreUnavailableError(`SQLite transaction failed (${(error as Error).message})`);
      for (const op of ops) op.reject(failure);
      return;
    }
    this.#wrote();
    for (let i = 0; i < ops.length; i++) (ops[i] as PendingOp).resolve(results[i] as Reservation);
  }

  #wrote(): void {
    this.#health.succeeded();
    this.#lastWriteAt = performance.now();
    this.#wroteSinceCheckpoint = true;
  }

  /**
   * While writes fail, one small write (at most once per PROBE_INTERVAL_MS) tells whether they work
   * again, so a store without traffic recovers too; until one succeeds, ping() fails with the cause.
   */
  #probeWrite(): void {
    const now = performance.now();
    if (now - this.#lastProbeAt >= PROBE_INTERVAL_MS) {
      this.#lastProbeAt = now;
      try {
        this.#db
          .transaction(() => {
            this.#db.run("CREATE TABLE IF NOT EXISTS write_probe (k INTEGER PRIMARY KEY, at INTEGER NOT NULL)");
            this.#db.run("INSERT OR REPLACE INTO write_probe (k, at) VALUES (1, ?)", [Date.now()]);
          })
          .immediate();
        this.#wrote();
        return;
      } catch (error) {
        this.#health.failed(error, true);
      }
    }
    if (this.#health.failing) throw new StoreUnavailableError(this.#health.describe());
  }

  /**
   * Empties the WAL file (TRUNCATE checkpoint) once writes have paused. busy_timeout is 0 meanwhile:
   * with another process reading or writing, the checkpoint gives up at once (retried next time)
   * instead of blocking this event loop. A failure here is left to the next write to report.
   */
  #checkpointWhenIdle(): void {
    if (this.#closed || !this.#wroteSinceCheckpoint || this.#pending.length > 0) return;
    if (performance.now() - this.#lastWriteAt < this.#idleCheckpointMs) return;
    try {
      this.#db.run("PRAGMA busy_timeout = 0");
      const result = this.#db.query<{ busy: number }, []>("PRAGMA wal_checkpoint(TRUNCATE)").get();
      if (result?.busy === 0) this.#wroteSinceCheckpoint = false;
    } catch {
      // Disk full or I/O error: the WAL keeps its pages, and the next write reports the failure.
    } finally {
      this.#db.run(`PRAGMA busy_timeout = ${this.#busyTimeoutMs}`);
    }
  }
}
