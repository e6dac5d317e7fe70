/**
 * The store guard: no number already handed out is handed out again, also after the store lost data
 * and the service restarted; where the service cannot tell, it refuses.
 *
 * The protocol. A durable store holds a marker (counter-store.ts StoreMarker): a random uid written
 * once when the store is initialized, a generation raised by each operator recovery, and a sequence
 * that every reservation raises. This guard, in every process:
 * 1. At start reads the marker and this host's witness file (witness.ts), and accepts the store only
 *    when they agree: the same uid, and no marker sequence below one the host saw acknowledged. A
 *    store without a marker is initialized only when it holds no counter and this host has no record
 *    of another store (`--store-init auto`; `never` leaves that to an operator).
 * 2. Attaches uid and sequences to the store, whose every reservation checks them atomically, in the
 *    script or transaction that grants the numbers (redis-scripts.ts, sqlite-store.ts): a marker gone
 *    (FLUSHALL, a restart empty, eviction) or replaced refuses with StoreLostError; a sequence below
 *    what this process saw acknowledged (an older backup restored, a failover to a lagging replica)
 *    halts the store for every process with StoreRollbackError.
 * 3. While refusing, answers every turn with that 503, fails /readyz with the reason, tells the
 *    operator once per episode (onChange), and reads the marker again every `recheckMs`, so that a
 *    recovery made through any host (`POST /admin/store/recover` with a floor above every number ever
 *    issued) resumes every process without a restart.
 *
 * Why refusing is right: after such a loss the store cannot say which numbers were handed out, and
 * any guess can repeat one. The recovery floor makes the operator's knowledge explicit; this host's
 * witness offers the least floor it knows (the highest number it issued).
 */
import { randomUUID } from "node:crypto";
import type {
  CounterSnapshot,
  CounterStore,
  Ledger,
  MarkerReading,
  Reservation,
  ReservationRequest,
  StoreMarker,
} from "../domain/counter-store.ts";
import { StoreLostError, StoreRollbackError, StoreUnavailableError, TurnoError } from "../domain/errors.ts";
import type { Witness, WitnessRecord } from "./witness.ts";

/** What the guard thinks of the store right now. */
export type GuardState =
  | { readonly status: "ok"; readonly marker: StoreMarker }
  | { readonly status: "checking"; readonly error: TurnoError }
  | { readonly status: "refusing"; readonly error: TurnoError };

export interface StoreGuardOptions {
  /** This host's record of the store; undefined for a store that forgets by design (memory). */
  readonly witness?: Witness;
  /** "auto": initialize an empty store this host has no record of; "never": leave it to an operator. */
  readonly init: "auto" | "never";
  /** How often a refusing or unchecked guard reads the marker again (ms). Default 1000. */
  readonly recheckMs?: number;
  /** Called on every change of state (for the logs and metrics). */
  readonly onChange?: (state: GuardState, previous: GuardState) => void;
}

/** How often, and how far apart, the start-up check is tried while the store does not answer. */
const START_ATTEMPTS = 5;
const START_RETRY_MS = 200;

export class StoreGuard implements CounterStore {
  readonly kind: string;
  readonly durable: boolean;
  readonly #inner: CounterStore;
  readonly #options: StoreGuardOptions;
  #state: GuardState = { status: "checking", error: new StoreUnavailableError("the store has not been checked yet") };
  #highest = 0;
  #accepted: StoreMarker | undefined;
  readonly #newLifeListeners: Array<() => void> = [];
  #timer: ReturnType<typeof setInterval> | undefined;
  #checking: Promise<void> | undefined;

  constructor(inner: CounterStore, options: StoreGuardOptions) {
    this.#inner = inner;
    this.#options = options;
    this.kind = inner.kind;
    this.durable = inner.durable;
    this.#highest = options.witness?.read()?.highest ?? 0;
  }

  get state(): GuardState {
    return this.#state;
  }

  /** The highest number this host has issued for any id (from its witness and this run). */
  get highest(): number {
    return this.#highest;
  }

  /**
   * Calls `listener` each time this process accepts a store marker other than the one it accepted
   * before (an operator's recovery: a new store life), before any reservation of the new life.
   */
  onNewLife(listener: () => void): void {
    this.#newLifeListeners.push(listener);
  }

  /**
   * Checks the store (a few quick tries while it does not answer, so a slow first connection does not
   * start the service refusing), then keeps checking in the background while it is refused.
   */
  async start(): Promise<GuardState> {
    for (let attempt = 0; attempt < START_ATTEMPTS; attempt++) {
      await this.check();
      if (this.#state.status !== "checking") break;
      await new Promise((resolve) => setTimeout(resolve, START_RETRY_MS));
    }
    this.#timer = setInterval(() => {
      if (this.#state.status !== "ok") void this.check();
    }, this.#options.recheckMs ?? 1000);
    (this.#timer as { unref?: () => void }).unref?.();
    return this.#state;
  }

  /** Reads the marker and the witness and decides (one check at a time). */
  check(): Promise<void> {
    this.#checking ??= this.#decide()
      .then(
        (state) => this.#enter(state),
        (error: unknown) => {
          if (error instanceof StoreLostError || error instanceof StoreRollbackError) this.#enter(refusing(error));
          else this.#enter({ status: "checking", error: unreachable(error) });
        },
      )
      .finally(() => {
        this.#checking = undefined;
      });
    return this.#checking;
  }

  async #decide(): Promise<GuardState> {
    let reading = await this.#inner.readMarker();
    const record = this.#options.witness?.read();
    if (reading.marker === undefined) {
      const refusal = this.#refuseInitializing(reading, record);
      if (refusal !== undefined) return refusal;
      await this.#inner.initializeMarker(randomUUID());
      reading = await this.#inner.readMarker();
    }
    const marker = reading.marker;
    if (marker === undefined) return refusing(new StoreLostError("the store's marker could not be written"));
    if (reading.missing > 0) {
      return refusing(
        new StoreLostError(`${reading.missing} of its marker keys are missing or differ: a shard lost its data or was replaced`),
      );
    }
    if (marker.halted !== undefined) return refusing(new StoreRollbackError(`halted: ${marker.halted}`));
    const seen = await this.#acceptedSeen(marker, reading, record);
    if (seen instanceof TurnoError) return refusing(seen);
    this.#inner.attach(marker.uid, seen);
    return { status: "ok", marker };
  }

  /** Why an unmarked store may not be initialized, or undefined when it may. */
  #refuseInitializing(reading: MarkerReading, record: WitnessRecord | undefined): GuardState | undefined {
    if (record !== undefined) {
      return refusing(
        new StoreLostError(
          `the store has no marker, but this host used store ${record.uid} (generation ${record.generation}, see ${this.#options.witness?.path}): it was emptied or replaced`,
        ),
      );
    }
    if (reading.hasCounters) {
      return refusing(new StoreLostError("the store holds counters but no marker: the marker was deleted or evicted"));
    }
    if (this.#options.init === "never") {
      return refusing(new StoreLostError("the store is not initialized and --store-init is never"));
    }
    return undefined;
  }

  /**
   * The sequences this process starts from: the witness's, when it knows this store; none for a store
   * an operator recovered (its sequences start anew) or one this host never used.
   */
  async #acceptedSeen(
    marker: StoreMarker,
    reading: MarkerReading,
    record: WitnessRecord | undefined,
  ): Promise<ReadonlyMap<string, number> | TurnoError> {
    if (record === undefined) return new Map();
    if (record.uid !== marker.uid) {
      if (marker.recovered && marker.generation > record.generation) return new Map();
      return new StoreLostError(
        `its marker is ${marker.uid} (generation ${marker.generation}) but this host used ${record.uid} (generation ${record.generation}): the store was replaced, or emptied and initialized again by a host without a record`,
      );
    }
    for (const [key, seq] of Object.entries(record.seen)) {
      const stored = reading.seq.get(key) ?? 0;
      if (stored < seq) {
        const reason = `sequence ${stored} of ${key} is below ${seq}, seen acknowledged by this host before it restarted`;
        await this.#inner.haltMarker(reason);
        return new StoreRollbackError(reason);
      }
    }
    return new Map(Object.entries(record.seen));
  }

  #enter(state: GuardState): void {
    const previous = this.#state;
    this.#state = state;
    if (state.status === "ok") {
      const before = this.#accepted;
      this.#accepted = state.marker;
      this.#remember();
      const marker = state.marker;
      if (before !== undefined && (before.uid !== marker.uid || before.generation !== marker.generation)) {
        for (const listener of this.#newLifeListeners) listener();
      }
    }
    // One log line per episode: a new status, or a refusal for another reason (code).
    const changed =
      previous.status !== state.status ||
      (previous.status !== "ok" && state.status !== "ok" && previous.error.code !== state.error.code);
    if (changed) this.#options.onChange?.(state, previous);
  }

  /** Queues the witness record (written by the witness's own timer; no allocation per call). */
  #remember(): void {
    if (this.#state.status === "ok") this.#options.witness?.update(this.#record);
  }

  /**
   * The record as it is when the witness writes it: the marker this process last accepted (a refusal
   * since then must not erase what the host knows of its store).
   */
  readonly #record = (): WitnessRecord => {
    const marker = this.#accepted ?? { uid: "", generation: 0 };
    return {
      uid: marker.uid,
      generation: marker.generation,
      seen: Object.fromEntries(this.#inner.seen()),
      highest: this.#highest,
    };
  };

  #refused(): TurnoError | undefined {
    return this.#state.status === "ok" ? undefined : this.#state.error;
  }

  /** A marker refusal from the store turns the guard to refusing; other errors pass through. */
  #onError(error: unknown): never {
    if (error instanceof StoreLostError || error instanceof StoreRollbackError) this.#enter(refusing(error));
    throw error;
  }

  async reserve(request: ReservationRequest): Promise<Reservation> {
    const refused = this.#refused();
    if (refused !== undefined) throw refused;
    let reservation: Reservation;
    try {
      reservation = await this.#inner.reserve(request);
    } catch (error) {
      this.#onError(error);
    }
    const last = reservation.first + reservation.count - 1;
    if (reservation.count > 0 && last > this.#highest) this.#highest = last;
    this.#remember();
    return reservation;
  }

  async report(delivered: ReadonlyMap<string, number>): Promise<void> {
    const refused = this.#refused();
    if (refused !== undefined) throw refused;
    await this.#inner.report(delivered).catch((error: unknown) => this.#onError(error));
  }

  async peek(id: string): Promise<CounterSnapshot> {
    const refused = this.#refused();
    if (refused !== undefined) throw refused;
    return this.#inner.peek(id);
  }

  ledger(id: string): Promise<Ledger> {
    return this.#inner.ledger(id);
  }

  totals(): Promise<Ledger> {
    return this.#inner.totals();
  }

  async set(id: string, value: number): Promise<CounterSnapshot> {
    const refused = this.#refused();
    if (refused !== undefined) throw refused;
    return this.#inner.set(id, value);
  }

  async setSchedule(id: string, schedule: string | undefined, day: number): Promise<void> {
    const refused = this.#refused();
    if (refused !== undefined) throw refused;
    return this.#inner.setSchedule(id, schedule, day);
  }

  /**
   * An operator's recovery: a new marker generation whose floor every counter not written since starts
   * above. Refuses a floor below the highest number this host knows it issued.
   */
  async recover(floor: number): Promise<StoreMarker> {
    if (floor < this.#highest) {
      throw new RecoveryFloorError(floor, this.#highest);
    }
    // Above every generation this host knows: its witness's, and the marker it accepted last (the
    // witness is written on a timer, so a host that recovers soon after it started may have none yet).
    const known = Math.max(this.#options.witness?.read()?.generation ?? 0, this.#accepted?.generation ?? 0);
    const marker = await this.#inner.recoverMarker(randomUUID(), floor, known);
    await this.check();
    return marker;
  }

  readMarker(): Promise<MarkerReading> {
    return this.#inner.readMarker();
  }

  initializeMarker(uid: string): Promise<StoreMarker> {
    return this.#inner.initializeMarker(uid);
  }

  recoverMarker(uid: string, floor: number, after: number): Promise<StoreMarker> {
    return this.#inner.recoverMarker(uid, floor, after);
  }

  haltMarker(reason: string): Promise<void> {
    return this.#inner.haltMarker(reason);
  }

  attach(uid: string, seen: ReadonlyMap<string, number>): void {
    this.#inner.attach(uid, seen);
  }

  seen(): ReadonlyMap<string, number> {
    return this.#inner.seen();
  }

  async ping(): Promise<void> {
    const refused = this.#refused();
    if (refused !== undefined) throw refused;
    await this.#inner.ping();
  }

  durabilityWarnings(): Promise<string[]> {
    return this.#inner.durabilityWarnings();
  }

  async close(): Promise<void> {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#options.witness?.close();
    await this.#inner.close();
  }
}

/** An operator asked for a recovery floor below a number this host already issued. */
export class RecoveryFloorError extends TurnoError {
  constructor(floor: number, highest: number) {
    super(
      "TURNO_ERR_INVALID_BODY",
      `The recovery floor ${floor} is below ${highest}, the highest number this host issued; use a floor above every number any host issued.`,
    );
  }
}

function refusing(error: TurnoError): GuardState {
  return { status: "refusing", error };
}

function unreachable(error: unknown): TurnoError {
  if (error instanceof TurnoError) return error;
  return new StoreUnavailableError(`its marker could not be read (${error instanceof Error ? error.message : String(error)})`);
}
