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
import type {
  CounterSnapshot,
  CounterStore,
  Ledger,
  MarkerReading,
  Reservation,
  ReservationRequest,
  StoreMarker,
} from "../domain/counter-store.ts";
import { StoreLostError, StoreRollbackError, StoreUnavailableError } from "../domain/errors.ts";
import { type CounterState, EMPTY_COUNTER, planReservation, type SeenKey } from "../domain/plan-reservation.ts";
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
  readonly run: (marker: MarkerRow) => Reservation | undefined;
  readonly resolve: (result: Reservation | undefined) => void;
  readonly reject: (error: Error) => void;
}

interface MarkerRow {
  readonly uid: string;
  readonly generation: number;
  readonly seq: number;
  readonly recovered: number;
  readonly floor: number;
  readonly halted: string | null;
  readonly issued: number;
  readonly delivered: number;
}

/** The one marker key of a single-file store, as it appears in seen() and the witness file. */
const MARKER_KEY = "sqlite";

const NO_MARKER: MarkerRow = {
  uid: "",
  generation: 0,
  seq: 0,
  recovered: 0,
  floor: 0,
  halted: null,
  issued: 0,
  delivered: 0,
};

/** How long opening the store keeps retrying while another process holds the file's lock. */
const STARTUP_BUSY_MS = 10_000;

/**
 * WAL bounds (docs/guides/operations.md, "SQLite disk"): SQLite checkpoints after a commit once the WAL
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

const SCHEMA = [
  "CREATE TABLE IF NOT EXISTS counters (id TEXT PRIMARY KEY, value INTEGER NOT NULL, epoch INTEGER NOT NULL) WITHOUT ROWID",
  "CREATE TABLE IF NOT EXISTS idempotency_keys (id TEXT NOT NULL, key TEXT NOT NULL, turno INTEGER NOT NULL, expires_at INTEGER NOT NULL, size INTEGER NOT NULL DEFAULT 1, PRIMARY KEY (id, key)) WITHOUT ROWID",
  // One row, present from the start: uid '' until the store is initialized; seq and the store-wide
  // ledger are counted from the first reservation on.
  "CREATE TABLE IF NOT EXISTS store_marker (k INTEGER PRIMARY KEY CHECK (k = 0), uid TEXT NOT NULL, generation INTEGER NOT NULL, seq INTEGER NOT NULL, recovered INTEGER NOT NULL, floor INTEGER NOT NULL, halted TEXT, issued INTEGER NOT NULL, delivered INTEGER NOT NULL)",
  "INSERT OR IGNORE INTO store_marker (k, uid, generation, seq, recovered, floor, halted, issued, delivered) VALUES (0, '', 0, 0, 0, 0, NULL, 0, 0)",
];

/** Ledger, generation and day columns, added to a counters table made before they existed. */
const LEDGER_COLUMNS = ["issued", "delivered", "generation", "day"];
/** How many numbers a key took (batch turns), added to a keys table made before batches existed. */
const KEY_COLUMNS = [{ name: "size", definition: "INTEGER NOT NULL DEFAULT 1" }];

export class SqliteStore implements CounterStore {
  readonly kind = "sqlite";
  readonly durable: boolean;
  readonly #db: Database;
  readonly #path: string;
  readonly #select;
  readonly #upsert;
  readonly #setSchedule;
  readonly #addDelivered;
  readonly #selectKey;
  readonly #insertKey;
  readonly #pruneKeys;
  readonly #selectMarker;
  readonly #advanceMarker;
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

  #uid: string | undefined;
  #seen = 0;

  constructor(options: SqliteStoreOptions) {
    this.#path = options.path;
    this.durable = options.path !== ":memory:";
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
    retryWhileBusy(() => db.transaction(() => createSchema(db)).immediate(), STARTUP_BUSY_MS);
    this.#select = db.query<CounterState, [string]>(
      "SELECT value, epoch, issued, delivered, generation, schedule, day FROM counters WHERE id = ?",
    );
    this.#upsert = db.query<unknown, [string, number, number, number, number, number, number]>(
      "INSERT INTO counters (id, value, epoch, issued, delivered, generation, day) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO UPDATE SET value = excluded.value, epoch = excluded.epoch, issued = excluded.issued, delivered = excluded.delivered, generation = excluded.generation, day = excluded.day",
    );
    this.#setSchedule = db.query<unknown, [string, string | null, number]>(
      "INSERT INTO counters (id, value, epoch, schedule, day) VALUES (?1, 0, 0, ?2, ?3) ON CONFLICT (id) DO UPDATE SET schedule = excluded.schedule, day = CASE WHEN excluded.schedule IS NULL THEN 0 ELSE max(day, excluded.day) END",
    );
    this.#addDelivered = db.query<unknown, [string, number]>(
      "INSERT INTO counters (id, value, epoch, delivered) VALUES (?1, 0, 0, ?2) ON CONFLICT (id) DO UPDATE SET delivered = delivered + excluded.delivered",
    );
    this.#selectKey = db.query<SeenKey, [string, string, number]>(
      "SELECT turno, size FROM idempotency_keys WHERE id = ? AND key = ? AND expires_at > ?",
    );
    this.#insertKey = db.query<unknown, [string, string, number, number, number]>(
      "INSERT OR REPLACE INTO idempotency_keys (id, key, turno, expires_at, size) VALUES (?, ?, ?, ?, ?)",
    );
    this.#pruneKeys = db.query<unknown, [number]>("DELETE FROM idempotency_keys WHERE expires_at <= ?");
    this.#selectMarker = db.query<MarkerRow, []>("SELECT * FROM store_marker WHERE k = 0");
    this.#advanceMarker = db.query<unknown, [number, number]>(
      "UPDATE store_marker SET seq = seq + 1, issued = issued + ?1, delivered = delivered + ?2 WHERE k = 0",
    );
    if (options.path !== ":memory:") {
      this.#checkpointTimer = setInterval(() => this.#checkpointWhenIdle(), this.#idleCheckpointMs);
      this.#checkpointTimer.unref();
    }
  }

  reserve(request: ReservationRequest): Promise<Reservation> {
    return this.#enqueue((marker) => {
      const { id } = request;
      const now = Date.now();
      const current = this.#read(id);
      const plan = planReservation(current, request, marker, (key) => this.#selectKey.get(id, key, now) ?? undefined);
      const { next } = plan;
      if (plan.count > 0 || plan.fenced || next.generation !== current.generation || next.day !== current.day) {
        this.#upsert.run(id, next.value, next.epoch, next.issued, next.delivered, next.generation, next.day ?? 0);
      }
      const expiresAt = now + (request.keyTtlSeconds ?? 0) * 1000;
      for (const { key, turno, size } of plan.newKeys) this.#insertKey.run(id, key, turno, expiresAt, size);
      this.#advanceMarker.run(plan.count, 0);
      return plan;
    }) as Promise<Reservation>;
  }

  report(delivered: ReadonlyMap<string, number>): Promise<void> {
    return this.#enqueue(() => {
      let total = 0;
      for (const [id, count] of delivered) {
        this.#addDelivered.run(id, count);
        total += count;
      }
      this.#advanceMarker.run(0, total);
      return undefined;
    }).then(() => undefined);
  }

  async peek(id: string): Promise<CounterSnapshot> {
    this.#assertOpen();
    const { value, epoch, schedule, day } = this.#read(id);
    return schedule ? { value, epoch, schedule, day: day ?? 0 } : { value, epoch };
  }

  async setSchedule(id: string, schedule: string | undefined, day: number): Promise<void> {
    this.#assertOpen();
    this.#setSchedule.run(id, schedule ?? null, day);
  }

  async ledger(id: string): Promise<Ledger> {
    this.#assertOpen();
    const { issued, delivered } = this.#read(id);
    return { issued, delivered };
  }

  async totals(): Promise<Ledger> {
    this.#assertOpen();
    const { issued, delivered } = this.#selectMarker.get() ?? NO_MARKER;
    return { issued, delivered };
  }

  async set(id: string, value: number): Promise<CounterSnapshot> {
    this.#assertOpen();
    return this.#db
      .transaction(() => {
        const counter = this.#read(id);
        const generation = (this.#selectMarker.get() ?? NO_MARKER).generation;
        const epoch = counter.epoch + 1;
        this.#upsert.run(id, value, epoch, counter.issued, counter.delivered, generation, counter.day ?? 0);
        return { value, epoch };
      })
      .immediate();
  }

  async readMarker(): Promise<MarkerReading> {
    this.#assertOpen();
    const row = this.#selectMarker.get() ?? NO_MARKER;
    const hasCounters = this.#db.query("SELECT 1 FROM counters LIMIT 1").get() !== null;
    const marker = row.uid === "" ? undefined : toMarker(row);
    return { marker, missing: 0, seq: new Map([[MARKER_KEY, row.seq]]), hasCounters };
  }

  async initializeMarker(uid: string): Promise<StoreMarker> {
    this.#assertOpen();
    return this.#db
      .transaction(() => {
        this.#db.run("UPDATE store_marker SET uid = ?, generation = 1, recovered = 0, floor = 0 WHERE k = 0 AND uid = ''", [uid]);
        return toMarker(this.#selectMarker.get() ?? NO_MARKER);
      })
      .immediate();
  }

  async recoverMarker(uid: string, floor: number, after: number): Promise<StoreMarker> {
    this.#assertOpen();
    return this.#db
      .transaction(() => {
        const generation = Math.max(this.#selectMarker.get()?.generation ?? 0, after) + 1;
        this.#db.run("UPDATE store_marker SET uid = ?, generation = ?, recovered = 1, floor = ?, halted = NULL WHERE k = 0", [
          uid,
          generation,
          floor,
        ]);
        return toMarker(this.#selectMarker.get() ?? NO_MARKER);
      })
      .immediate();
  }

  async haltMarker(reason: string): Promise<void> {
    this.#assertOpen();
    this.#db.run("UPDATE store_marker SET halted = ? WHERE k = 0 AND halted IS NULL AND uid != ''", [reason]);
  }

  attach(uid: string, seen: ReadonlyMap<string, number>): void {
    this.#uid = uid;
    this.#seen = seen.get(MARKER_KEY) ?? 0;
  }

  seen(): ReadonlyMap<string, number> {
    return new Map([[MARKER_KEY, this.#seen]]);
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

  #read(id: string): CounterState {
    return this.#select.get(id) ?? EMPTY_COUNTER;
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreUnavailableError("the SQLite store is closed");
  }

  #enqueue(run: PendingOp["run"]): Promise<Reservation | undefined> {
    if (this.#closed) return Promise.reject(new StoreUnavailableError("the SQLite store is closed"));
    return new Promise((resolve, reject) => {
      this.#pending.push({ run, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#commit());
      }
    });
  }

  /**
   * The marker check of every transaction (store-guard.ts): the marker must be the attached one, not
   * halted, and its sequence not below the highest this process saw committed. Throws otherwise; a
   * sequence that went backwards also halts the store, in its own transaction so that it sticks.
   */
  #checkMarker(): MarkerRow {
    const marker = this.#selectMarker.get() ?? NO_MARKER;
    if (this.#uid === undefined) return marker;
    if (marker.uid !== this.#uid) {
      throw new StoreLostError(marker.uid === "" ? "the store has no marker" : `its marker is ${marker.uid}, not ${this.#uid}`);
    }
    if (marker.halted !== null) throw new StoreRollbackError(`halted: ${marker.halted}`);
    if (marker.seq < this.#seen) throw new SequenceBehindError(marker.seq, this.#seen);
    return marker;
  }

  /** Applies every pending operation in one transaction (one fsync), then answers them all. */
  #commit(): void {
    this.#scheduled = false;
    const ops = this.#pending;
    if (ops.length === 0) return;
    this.#pending = [];
    let results: Array<Reservation | undefined>;
    let committedSeq = this.#seen;
    try {
      results = this.#db
        .transaction(() => {
          const marker = this.#checkMarker();
          // Each operation raises the sequence by one; we hold the write lock, so this is exact.
          if (this.#uid !== undefined) committedSeq = marker.seq + ops.length;
          return ops.map((op) => op.run(marker));
        })
        .immediate();
    } catch (error) {
      const failure = this.#failure(error);
      if (failure instanceof StoreUnavailableError) this.#health.failed(error);
      for (const op of ops) op.reject(failure);
      return;
    }
    this.#wrote();
    this.#seen = committedSeq;
    for (let i = 0; i < ops.length; i++) (ops[i] as PendingOp).resolve(results[i]);
  }

  #failure(error: unknown): Error {
    if (error instanceof SequenceBehindError) {
      const reason = `sequence ${error.stored} below ${error.seen} seen by pid ${process.pid}`;
      try {
        this.#db.run("UPDATE store_marker SET halted = ? WHERE k = 0 AND halted IS NULL", [reason]);
      } catch {
        // The rollback is refused either way; the next check halts it again.
      }
      return new StoreRollbackError(reason);
    }
    if (error instanceof StoreLostError || error instanceof StoreRollbackError) return error;
    return new StoreUnavailableError(`SQLite transaction failed (${(error as Error).message})`);
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

class SequenceBehindError extends Error {
  constructor(
    readonly stored: number,
    readonly seen: number,
  ) {
    super(`store sequence ${stored} is below ${seen}`);
  }
}

function createSchema(db: Database): void {
  for (const statement of SCHEMA) db.run(statement);
  const columns = new Set(
    db
      .query<{ name: string }, []>("PRAGMA table_info(counters)")
      .all()
      .map((c) => c.name),
  );
  for (const column of LEDGER_COLUMNS) {
    if (!columns.has(column)) db.run(`ALTER TABLE counters ADD COLUMN ${column} INTEGER NOT NULL DEFAULT 0`);
  }
  const keyColumns = new Set(
    db
      .query<{ name: string }, []>("PRAGMA table_info(idempotency_keys)")
      .all()
      .map((c) => c.name),
  );
  for (const { name, definition } of KEY_COLUMNS) {
    if (!keyColumns.has(name)) db.run(`ALTER TABLE idempotency_keys ADD COLUMN ${name} ${definition}`);
  }
  // The daily reset's text (daily-schedule.ts); NULL = none.
  if (!columns.has("schedule")) db.run("ALTER TABLE counters ADD COLUMN schedule TEXT");
}

function toMarker(row: MarkerRow): StoreMarker {
  return {
    uid: row.uid,
    generation: row.generation,
    recovered: row.recovered === 1,
    floor: row.floor,
    halted: row.halted ?? undefined,
  };
}
