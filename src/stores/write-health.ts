/**
 * Whether a local store can write (issue 13.4). One "episode" runs from the first write that fails
 * for a storage reason (disk full, I/O error, read-only file or directory) to the next write that
 * succeeds. While it runs the store's ping() fails, so /readyz answers 503 and load balancers move
 * away; the observer hears the start and the end once each (one log line each, however many
 * transactions fail in between: measured before this, ~50k failed transactions logged nothing) and
 * every failed write (a counter). Nothing needs a restart: the next successful write, a request's
 * or the readiness probe's, ends the episode.
 *
 * Lock contention (SQLITE_BUSY, SQLITE_LOCKED: another process held the write lock past
 * busy_timeout) is not a storage failure and starts no episode: the disk is fine, and failing
 * readiness on every worker of a host for it would take the host out over a transient wait.
 */

/** What an episode looks like to the observer. */
export interface WriteEpisode {
  readonly state: "failing" | "recovered";
  /** SQLite's result code of the first failure, e.g. SQLITE_FULL, SQLITE_IOERR_WRITE, SQLITE_READONLY. */
  readonly code: string;
  readonly error: string;
  /** Failed writes in the episode (recovered only; includes none of the readiness probes). */
  readonly failedWrites?: number;
  /** How long writes failed (recovered only). */
  readonly durationMs?: number;
}

export interface WriteHealthObserver {
  /** Every failed write transaction (not the readiness probes), for a counter. */
  onWriteFailure?(code: string): void;
  /** Once when writes start failing and once when one succeeds again. */
  onEpisode?(episode: WriteEpisode): void;
}

/** Result codes that say nothing about the storage: the write may succeed on the next try. */
const CONTENTION = /^SQLITE_(BUSY|LOCKED)/;

export function sqliteCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" && code.startsWith("SQLITE_") ? code : undefined;
}

/** True for a failure of the storage under the store (the kind that starts an episode). */
export function isStorageFailure(error: unknown): boolean {
  const code = sqliteCode(error);
  return code !== undefined && !CONTENTION.test(code);
}

export class WriteHealth {
  readonly #observer: WriteHealthObserver;
  #since: number | undefined;
  #code = "";
  #error = "";
  #failedWrites = 0;

  constructor(observer: WriteHealthObserver = {}) {
    this.#observer = observer;
  }

  /** True from a storage failure until the next successful write. */
  get failing(): boolean {
    return this.#since !== undefined;
  }

  /** A write transaction failed; `probe` = the readiness probe's write (not counted). */
  failed(error: unknown, probe = false): void {
    if (!isStorageFailure(error)) return;
    const code = sqliteCode(error) ?? "SQLITE_ERROR";
    const message = (error as Error).message;
    if (!probe) {
      this.#failedWrites++;
      this.#observer.onWriteFailure?.(code);
    }
    if (this.#since !== undefined) return;
    this.#since = Date.now();
    this.#code = code;
    this.#error = message;
    this.#observer.onEpisode?.({ state: "failing", code, error: message });
  }

  /** A write committed: ends the episode, if one runs. */
  succeeded(): void {
    if (this.#since === undefined) return;
    const durationMs = Date.now() - this.#since;
    this.#since = undefined;
    const failedWrites = this.#failedWrites;
    this.#failedWrites = 0;
    this.#observer.onEpisode?.({ state: "recovered", code: this.#code, error: this.#error, failedWrites, durationMs });
  }

  /** For /readyz: what fails, since when, and what the operator does. */
  describe(): string {
    const since = this.#since === undefined ? "" : ` since ${new Date(this.#since).toISOString()}`;
    return `SQLite writes are failing${since} (${this.#code}: ${this.#error}); free disk space or make the database file and its directory writable, turns resume when a write succeeds`;
  }
}
