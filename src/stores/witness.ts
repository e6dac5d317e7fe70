/**
 * The witness: what this host remembers of its store, in a small file beside it, so that a process
 * that starts again can tell a store that lost data from a new one (an empty store looks the same
 * either way; only something outside it can tell). One file per process slot (the single process or
 * worker N), merged on reading, written atomically (temporary file + rename) at most every
 * `intervalMs` while something changed, and on close.
 *
 * A host killed -9 may lose its last interval of records: a store rolled back by less than that, with
 * no other process left that saw more, goes unnoticed by this host (docs/guides/redis.md, "What stays
 * undetectable").
 */
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export interface WitnessRecord {
  /** The store marker's uid and generation this host last used. */
  readonly uid: string;
  readonly generation: number;
  /** The highest sequence seen acknowledged, per marker key. */
  readonly seen: Readonly<Record<string, number>>;
  /** The highest number this host issued for any id: the least floor a recovery may use. */
  readonly highest: number;
}

export interface WitnessOptions {
  /** Folder of the witness files. */
  readonly dir: string;
  /** What names the store (URL without credentials, plus the key prefix). */
  readonly store: string;
  /** This process's slot: "main", or the worker number. */
  readonly slot: string;
  /** Longest a change waits before it is written (ms). Default 500. */
  readonly intervalMs?: number;
  /**
   * Told when the file cannot be written (read-only or full disk), and again when it can: the guard
   * still protects running processes, but a restarted one cannot recognize its store.
   */
  readonly onWriteError?: (error: Error | undefined) => void;
}

export class Witness {
  readonly #dir: string;
  readonly #base: string;
  readonly #file: string;
  readonly #timer: ReturnType<typeof setInterval>;
  #pending: (() => WitnessRecord) | undefined;
  readonly #onWriteError: ((error: Error | undefined) => void) | undefined;
  #failing = false;

  constructor(options: WitnessOptions) {
    this.#dir = options.dir;
    this.#base = `witness-${createHash("sha256").update(options.store).digest("hex").slice(0, 16)}`;
    this.#file = join(options.dir, `${this.#base}.${options.slot}.json`);
    this.#onWriteError = options.onWriteError;
    this.#timer = setInterval(() => this.flush(), options.intervalMs ?? 500);
    (this.#timer as { unref?: () => void }).unref?.();
  }

  /** Where this process writes (for messages). */
  get path(): string {
    return this.#file;
  }

  /** Every process slot's record for this store, merged (highest sequences, latest generation). */
  read(): WitnessRecord | undefined {
    let names: string[];
    try {
      names = readdirSync(this.#dir).filter((name) => name.startsWith(`${this.#base}.`) && name.endsWith(".json"));
    } catch {
      return undefined;
    }
    const records = names.flatMap((name) => {
      try {
        return [JSON.parse(readFileSync(join(this.#dir, name), "utf8")) as WitnessRecord];
      } catch {
        return [];
      }
    });
    return mergeRecords(records);
  }

  /** Marks the record changed; `record` is called when it is written. */
  update(record: () => WitnessRecord): void {
    this.#pending = record;
  }

  /** Writes a pending change now; a failure is reported once and retried with the next change. */
  flush(): void {
    const record = this.#pending;
    if (record === undefined) return;
    this.#pending = undefined;
    try {
      mkdirSync(this.#dir, { recursive: true });
      const temporary = `${this.#file}.tmp`;
      writeFileSync(temporary, `${JSON.stringify(record())}\n`);
      renameSync(temporary, this.#file);
    } catch (error) {
      this.#pending ??= record;
      if (!this.#failing) this.#onWriteError?.(error as Error);
      this.#failing = true;
      return;
    }
    if (this.#failing) this.#onWriteError?.(undefined);
    this.#failing = false;
  }

  close(): void {
    clearInterval(this.#timer);
    this.flush();
  }
}

/** The newest generation's records win; within it, the highest sequence per key and number. */
export function mergeRecords(records: readonly WitnessRecord[]): WitnessRecord | undefined {
  if (records.length === 0) return undefined;
  const generation = Math.max(...records.map((r) => r.generation));
  const current = records.filter((r) => r.generation === generation);
  const seen: Record<string, number> = {};
  for (const record of current) {
    for (const [key, seq] of Object.entries(record.seen)) seen[key] = Math.max(seen[key] ?? 0, seq);
  }
  return {
    uid: (current[0] as WitnessRecord).uid,
    generation,
    seen,
    highest: Math.max(...records.map((r) => r.highest)),
  };
}
