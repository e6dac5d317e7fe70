/**
 * Redis store (redis:// or rediss://, local or remote) through ioredis. Each reservation is one
 * atomic Lua script run. On a single node, the reservations that the coalescer issues for different
 * ids in one event-loop turn go out as ONE script call (RESERVE_MANY), so with many ids the Redis
 * round trips per request stay far below one (a cluster cannot do that: its keys live in different
 * slots, so it sends one call per id).
 *
 * `autoResendUnfulfilledCommands` is off: a reservation that was sent when the connection dropped may
 * have run, and resending it would burn a second batch of numbers. Such a reservation fails instead
 * (its numbers are "in doubt" and counted). `commandTimeout` bounds every call.
 */
import Redis, { type RedisOptions } from "ioredis";
import {
  type CounterSnapshot,
  type CounterStore,
  type KeyedGrant,
  type Ledger,
  type MarkerReading,
  NO_KEYED_GRANTS,
  type Reservation,
  type ReservationRequest,
  type StoreMarker,
} from "../domain/counter-store.ts";
import { StoreLostError, StoreRollbackError, StoreUnavailableError } from "../domain/errors.ts";
import { MAX_TURNO } from "../domain/limits.ts";
import { type ConnectionStateListener, type ConnectionWatch, watchConnection } from "./connection-events.ts";
import { type CheckedNode, type CheckOptions, checkAtStart, type StartCheck } from "./redis-checks.ts";
import {
  HALT_MARKER_SCRIPT,
  HALTED_REPLY,
  INIT_MARKER_SCRIPT,
  LOST_REPLY,
  READ_MARKER_SCRIPT,
  RECOVER_MARKER_SCRIPT,
  REPORT_SCRIPT,
  RESERVE_SCRIPT,
  SCHEDULE_SCRIPT,
  SET_SCRIPT,
  TOTALS_SCRIPT,
} from "./redis-scripts.ts";
import { ReplicaAck } from "./replica-ack.ts";
import { guardAgainstSilence, type SilenceGuard } from "./silence-guard.ts";
import { type RedisTlsFiles, tlsOptions } from "./redis-tls.ts";

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL (user, password and database number as in the URL). */
  readonly url: string;
  /** Prefix of every key; lets several deployments share one Redis. Default "turnomatic:". */
  readonly keyPrefix: string;
  /** Longest wait for one Redis command (ms); usually the request deadline. */
  readonly commandTimeoutMs: number;
  /** Replicas that must acknowledge each reservation (WAIT, see replica-ack.ts). Default 0 = none. */
  readonly waitReplicas?: number;
  /** Longest WAIT (ms). Default 500. */
  readonly waitTimeoutMs?: number;
  /** Told about connection state changes (for the logs). Default: none. */
  readonly onStateChange?: ConnectionStateListener;
  /** CA bundle and client certificate for rediss:// (redis-tls.ts). Default: Node's default roots. */
  readonly tls?: RedisTlsFiles;
  /** What the start-up checks accept (redis-checks.ts). Default: refuse an evicting policy. */
  readonly checks?: CheckOptions;
}

/** The scripted commands ioredis adds to a client by defineCommand (replies: decimal strings). */
interface TurnoCommands {
  /** numberOfKeys, keys..., args...: see RESERVE_SCRIPT. */
  turnoReserve(...args: Array<string | number>): Promise<Array<string | number>>;
  turnoReport(...args: Array<string | number>): Promise<string>;
  turnoSet(counterKey: string, markerKey: string, value: string): Promise<[string, string]>;
  turnoSchedule(counterKey: string, schedule: string, day: string): Promise<string>;
}

/** uid, gen, recovered, floor, halted, seq. */
type MarkerFields = [string | null, string | null, string | null, string | null, string | null, string | null];

/** Most counters in one reservation call, to bound the time one script holds the server. */
const MAX_IDS_PER_CALL = 256;

interface PendingReservation {
  readonly request: ReservationRequest;
  readonly resolve: (reply: ReservationReply) => void;
  readonly reject: (error: unknown) => void;
}

/** A reservation as the script answered it, before the replica acknowledgement. */
interface ReservationReply {
  readonly reservation: Reservation;
  readonly markerKey: string;
  readonly seq: number;
}

/** A client of either kind (single Redis or Cluster) with our scripts defined. */
export type ScriptedClient = Pick<Redis, "hmget" | "ping" | "config" | "quit" | "disconnect" | "info" | "scan" | "eval"> &
  TurnoCommands;

/** Where the store marker lives: one key on a single node, one per slot on a Cluster. */
export interface MarkerLayout {
  /** The marker key for `id`'s counter. */
  forId(id: string): string;
  /** Every marker key. */
  all(): readonly string[];
}

/** Options of RedisCounterStore beyond the client. */
export interface RedisCounterStoreOptions {
  /** Send one call for the reservations of many ids (single primary only, not Cluster). Default false. */
  readonly batchAcrossIds?: boolean;
  /** Make every write wait for replica acknowledgements (see replica-ack.ts). Default none. */
  readonly ack?: ReplicaAck;
  /** Reconnect when a command times out on a connection that went silent (see silence-guard.ts). */
  readonly silence?: SilenceGuard;
  /** The connection's state and last cause of failure (connection-events.ts), for ping and checks. */
  readonly connection?: ConnectionWatch;
  /** What the start-up checks accept (redis-checks.ts). Default: refuse an evicting policy. */
  readonly checks?: CheckOptions;
  /** Default: one marker `<prefix>marker`. */
  readonly markers?: MarkerLayout;
}

/** ioredis options shared by every Redis-based store; see the header for why each is set. */
export function baseRedisOptions(commandTimeoutMs: number): RedisOptions {
  return {
    // Measured with bench/run.ts: auto-pipelining's deferred write cost throughput here; reservations
    // of many ids are batched by RESERVE_MANY instead.
    enableAutoPipelining: false,
    autoResendUnfulfilledCommands: false,
    commandTimeout: commandTimeoutMs,
    connectTimeout: Math.max(1000, commandTimeoutMs),
    // After disconnect(true) on a dead link (silence-guard.ts) the socket's FIN is never
    // acknowledged; destroy it soon instead of after ioredis's default 2 s, and reconnect.
    disconnectTimeout: 200,
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt: number) => Math.min(50 * attempt, 1000),
  };
}

/** Adds the store's scripts to a client (single or cluster). */
export function defineScripts(client: Redis | import("ioredis").Cluster): void {
  client.defineCommand("turnoReserve", { lua: RESERVE_SCRIPT });
  client.defineCommand("turnoReport", { lua: REPORT_SCRIPT });
  client.defineCommand("turnoSet", { numberOfKeys: 2, lua: SET_SCRIPT });
  client.defineCommand("turnoSchedule", { numberOfKeys: 1, lua: SCHEDULE_SCRIPT });
}

/**
 * The store logic on top of any scripted client, so the single-node, Sentinel and Cluster stores
 * share it and differ only in how they connect and where their markers live.
 */
export class RedisCounterStore implements CounterStore {
  readonly kind: string;
  readonly durable = true;
  protected readonly client: ScriptedClient;
  readonly #prefix: string;
  readonly #batchAcrossIds: boolean;
  readonly #ack: ReplicaAck | undefined;
  readonly #silence: SilenceGuard | undefined;
  readonly #connection: ConnectionWatch | undefined;
  readonly #checks: CheckOptions;
  readonly #markers: MarkerLayout;
  readonly #seen = new Map<string, number>();
  #uid = "";
  #pending: PendingReservation[] = [];
  #closed = false;

  constructor(kind: string, client: ScriptedClient, keyPrefix: string, options: RedisCounterStoreOptions = {}) {
    this.kind = kind;
    this.client = client;
    this.#prefix = keyPrefix;
    this.#batchAcrossIds = options.batchAcrossIds ?? false;
    this.#ack = options.ack;
    this.#silence = options.silence;
    this.#connection = options.connection;
    this.#checks = options.checks ?? {};
    const single = [`${keyPrefix}marker`];
    this.#markers = options.markers ?? { forId: () => single[0] as string, all: () => single };
  }

  #watch<T>(call: Promise<T>): Promise<T> {
    return this.#silence === undefined ? call : this.#silence.watch(call);
  }

  counterKey(id: string): string {
    return `${this.#prefix}{${id}}`;
  }

  async reserve(request: ReservationRequest): Promise<Reservation> {
    const reply = await this.#send(request);
    await this.#ack?.afterWrite();
    // Only an acknowledged reservation raises what this process has seen (a failover may lose the rest).
    if (reply.seq > (this.#seen.get(reply.markerKey) ?? 0)) this.#seen.set(reply.markerKey, reply.seq);
    return reply.reservation;
  }

  #send(request: ReservationRequest): Promise<ReservationReply> {
    return new Promise((resolve, reject) => {
      if (!this.#batchAcrossIds) {
        this.#call([{ request, resolve, reject }]);
        return;
      }
      this.#pending.push({ request, resolve, reject });
      if (this.#pending.length === 1) setImmediate(() => this.#flush());
    });
  }

  /** Sends the reservations collected during one event-loop turn, up to MAX_IDS_PER_CALL per call. */
  #flush(): void {
    const pending = this.#pending;
    this.#pending = [];
    for (let start = 0; start < pending.length; start += MAX_IDS_PER_CALL) {
      this.#call(pending.slice(start, start + MAX_IDS_PER_CALL));
    }
  }

  /** One script call for reservations that share a marker key (all of them, on a single node). */
  #call(chunk: readonly PendingReservation[]): void {
    const first = chunk[0] as PendingReservation;
    const markerKey = this.#markers.forId(first.request.id);
    const keys: string[] = [markerKey];
    const args: Array<string | number> = [this.#uid, this.#seen.get(markerKey) ?? 0, MAX_TURNO, keyTtlMs(chunk)];
    for (const { request } of chunk) {
      const counterKey = this.counterKey(request.id);
      keys.push(counterKey);
      const fence = request.fence;
      const waiters = request.keys ?? [];
      const sizes = request.sizes;
      // Batch turns send -n and the sizes after the positions (RESERVE_SCRIPT, GRANT_SIZED).
      args.push(sizes === undefined ? request.n : -request.n, fence === undefined ? "" : String(fence.floor), fence?.epoch ?? 0);
      args.push(waiters.length);
      for (const waiter of waiters) {
        keys.push(`${counterKey}:idem:${waiter.key}`);
        args.push(waiter.position);
      }
      if (sizes !== undefined) for (const size of sizes) args.push(size);
      // Last of the id's arguments, after the sizes: its day ('' = none; NEW_DAY in redis-scripts.ts).
      const day = request.day;
      args.push(day === undefined ? "" : `${day.start} ${day.schedule}`);
    }
    this.#watch(this.callScript("turnoReserve", keys, args) as Promise<Array<string | number>>).then(
      (reply) => {
        const seq = Number(reply[0]);
        let at = 1;
        for (const p of chunk) {
          const k = p.request.keys?.length ?? 0;
          p.resolve({ reservation: toReservation(reply, at, k), markerKey, seq });
          at += 4 + 2 * k;
        }
      },
      (error: unknown) => {
        const failure = markerFailure(error) ?? error;
        for (const p of chunk) p.reject(failure);
      },
    );
  }

  async report(delivered: ReadonlyMap<string, number>): Promise<void> {
    const byMarker = new Map<string, string[]>();
    for (const id of delivered.keys()) {
      const markerKey = this.#markers.forId(id);
      const ids = byMarker.get(markerKey) ?? [];
      ids.push(id);
      byMarker.set(markerKey, ids);
    }
    await Promise.all(
      [...byMarker].map(async ([markerKey, ids]) => {
        const keys = [markerKey, ...ids.map((id) => this.counterKey(id))];
        const counts = ids.map((id) => delivered.get(id) ?? 0);
        await this.#watch(this.callScript("turnoReport", keys, [this.#uid, ...counts])).catch((error: unknown) => {
          throw markerFailure(error) ?? error;
        });
      }),
    );
  }

  async peek(id: string): Promise<CounterSnapshot> {
    const [value, epoch, daily] = await this.#watch(this.client.hmget(this.counterKey(id), "v", "e", "z"));
    const snapshot = { value: Number(value ?? 0), epoch: Number(epoch ?? 0) };
    if (daily === null || daily === undefined) return snapshot;
    const space = daily.indexOf(" ");
    return { ...snapshot, schedule: daily.slice(space + 1), day: Number(daily.slice(0, space)) };
  }

  async setSchedule(id: string, schedule: string | undefined, day: number): Promise<void> {
    await this.#watch(this.client.turnoSchedule(this.counterKey(id), schedule ?? "", String(day)));
    await this.#ack?.afterWrite();
  }

  async ledger(id: string): Promise<Ledger> {
    const [value, skipped, delivered] = await this.#watch(this.client.hmget(this.counterKey(id), "v", "s", "d"));
    return { issued: Number(value ?? 0) - Number(skipped ?? 0), delivered: Number(delivered ?? 0) };
  }

  async totals(): Promise<Ledger> {
    const replies = (await this.#onMarkers(TOTALS_SCRIPT, [])) as Array<[string | null, string | null]>;
    let issued = 0;
    let delivered = 0;
    for (const [ti, td] of replies) {
      issued += Number(ti ?? 0);
      delivered += Number(td ?? 0);
    }
    return { issued, delivered };
  }

  async set(id: string, value: number): Promise<CounterSnapshot> {
    const [stored, epoch] = await this.#watch(this.client.turnoSet(this.counterKey(id), this.#markers.forId(id), String(value)));
    await this.#ack?.afterWrite();
    return { value: Number(stored), epoch: Number(epoch) };
  }

  async readMarker(): Promise<MarkerReading> {
    const keys = this.#markers.all();
    const fields = (await this.#onMarkers(READ_MARKER_SCRIPT, [])) as MarkerFields[];
    const seq = new Map<string, number>();
    let marker: StoreMarker | undefined;
    let missing = 0;
    let mixed = false;
    fields.forEach((f, i) => {
      seq.set(keys[i] as string, Number(f[5] ?? 0));
      if (f[0] === null) {
        missing++;
        return;
      }
      const found = toMarker(f);
      if (marker !== undefined && (marker.uid !== found.uid || marker.generation !== found.generation)) mixed = true;
      // Any halt on any slot halts the whole store.
      if (marker === undefined || found.halted !== undefined) marker = found;
    });
    if (mixed) missing = Math.max(missing, 1);
    return { marker, missing: marker === undefined ? 0 : missing, seq, hasCounters: await this.#hasCounters() };
  }

  async initializeMarker(uid: string): Promise<StoreMarker> {
    const replies = (await this.#onMarkers(INIT_MARKER_SCRIPT, [uid])) as MarkerFields[];
    await this.#ack?.afterWrite();
    return toMarker(replies[0] as MarkerFields);
  }

  async recoverMarker(uid: string, floor: number, after: number): Promise<StoreMarker> {
    // One generation for every slot marker: above the highest any of them has.
    const stored = (await this.#onMarkers(READ_MARKER_SCRIPT, [])) as MarkerFields[];
    const highest = Math.max(after, ...stored.map((f) => Number(f[1] ?? 0)));
    const replies = (await this.#onMarkers(RECOVER_MARKER_SCRIPT, [uid, String(floor), highest])) as MarkerFields[];
    await this.#ack?.afterWrite();
    return toMarker(replies[0] as MarkerFields);
  }

  async haltMarker(reason: string): Promise<void> {
    await this.#onMarkers(HALT_MARKER_SCRIPT, [reason]);
  }

  /** Calls one of the scripts whose number of keys varies (reserve, report). */
  protected callScript(
    name: "turnoReserve" | "turnoReport",
    keys: readonly string[],
    args: ReadonlyArray<string | number>,
  ): Promise<unknown> {
    return this.client[name](keys.length, ...keys, ...args);
  }

  #onMarkers(lua: string, args: ReadonlyArray<string | number>): Promise<unknown[]> {
    return this.#watch(this.runOnMarkers(this.#markers.all(), lua, args));
  }

  /**
   * Runs a many-marker script (redis-scripts.ts) on every marker key; one reply per key, in order.
   * A Cluster's override sends one call per primary, with the slot markers it serves.
   */
  protected async runOnMarkers(keys: readonly string[], lua: string, args: ReadonlyArray<string | number>): Promise<unknown[]> {
    return (await this.client.eval(lua, 0, keys.length, ...keys, ...args)) as unknown[];
  }

  attach(uid: string, seen: ReadonlyMap<string, number>): void {
    this.#uid = uid;
    this.#seen.clear();
    for (const [key, seq] of seen) this.#seen.set(key, seq);
  }

  seen(): ReadonlyMap<string, number> {
    return this.#seen;
  }

  /** The servers to look for counters on (every primary of a Cluster). */
  protected scanTargets(): Array<Pick<Redis, "scan">> {
    return [this.client];
  }

  async #hasCounters(): Promise<boolean> {
    for (const node of this.scanTargets()) {
      let cursor = "0";
      do {
        const [next, found] = await node.scan(cursor, "MATCH", `${escapeGlob(this.#prefix)}{*`, "COUNT", 1000);
        if (found.length > 0) return true;
        cursor = next;
      } while (cursor !== "0");
    }
    return false;
  }

  /** Fails at once, naming the cause, while the connection is down (for /readyz). */
  async ping(): Promise<void> {
    const down = this.#connection?.downCause();
    if (down !== undefined) throw new StoreUnavailableError(down);
    await this.#watch(this.client.ping());
  }

  /**
   * Waits up to `waitMs` for the connection, then checks persistence and eviction on every node
   * (redis-checks.ts). Throws ConfigError when a node's eviction policy can evict counters.
   */
  checkAtStart(waitMs: number): Promise<StartCheck> {
    return checkAtStart(this.kind, this.#connection, () => this.checkedNodes(), this.#checks, waitMs);
  }

  /** The servers the start-up checks read; Sentinel and Cluster stores list more than one. */
  protected async checkedNodes(): Promise<CheckedNode[]> {
    return [{ label: `${this.kind} store`, client: this.client }];
  }

  async durabilityWarnings(): Promise<string[]> {
    const check = await this.checkAtStart(5000);
    return check.state === "unreachable" ? [check.cause] : [...check.warnings];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.client.quit();
    } catch {
      // Closed already or unreachable: disconnect below drops it anyway.
    }
    // quit() leaves Sentinel's failover-detector connections open; disconnect() closes them too.
    this.client.disconnect();
  }
}

/** The key lifetime of a call: the one its keyed requests ask for (every caller passes one TTL). */
function keyTtlMs(chunk: readonly PendingReservation[]): number {
  const seconds = chunk.find((p) => p.request.keyTtlSeconds !== undefined)?.request.keyTtlSeconds ?? 86_400;
  return Math.max(1, Math.round(seconds * 1000));
}

/**
 * Reads one id's share of a reservation reply, starting at `at`, with `k` keyed waiters. Values are
 * RESP integers (small ones) or decimal strings (numbers near MAX_TURNO): Number() reads both.
 */
function toReservation(reply: ReadonlyArray<string | number>, at: number, k: number): Reservation {
  if (reply[at + 3] === 2) return scheduleChanged(reply, at, k);
  let keyed: readonly KeyedGrant[] = NO_KEYED_GRANTS;
  if (k > 0) {
    const grants: KeyedGrant[] = [];
    for (let j = 0; j < k; j++) grants.push(toKeyedGrant(reply[at + 4 + 2 * j], Number(reply[at + 5 + 2 * j]) === 1));
    keyed = grants;
  }
  return {
    first: Number(reply[at]),
    count: Number(reply[at + 1]),
    epoch: Number(reply[at + 2]),
    fenced: Number(reply[at + 3]) === 1,
    keyed,
  };
}

/** A key's answer: "first" (one number) or, for a replayed batch key, "first:count" (GRANT_SIZED). */
function toKeyedGrant(turno: string | number | undefined, replayed: boolean): KeyedGrant {
  const colon = typeof turno === "string" ? turno.indexOf(":") : -1;
  if (colon < 0) return { turno: Number(turno), replayed };
  const text = turno as string;
  return { turno: Number(text.slice(0, colon)), replayed, count: Number(text.slice(colon + 1)) };
}

/** The answer for an id whose schedule the caller did not know: nothing reserved (RESERVE_SCRIPT). */
function scheduleChanged(reply: ReadonlyArray<string | number>, at: number, k: number): Reservation {
  const schedule = String(reply[at]);
  const none = { turno: 0, replayed: false };
  return {
    first: 0,
    count: 0,
    epoch: Number(reply[at + 2]),
    fenced: false,
    keyed: k === 0 ? NO_KEYED_GRANTS : Array.from({ length: k }, () => none),
    scheduleChanged: { schedule: schedule === "" ? undefined : schedule },
  };
}

function toMarker(fields: MarkerFields): StoreMarker {
  return {
    uid: fields[0] ?? "",
    generation: Number(fields[1] ?? 0),
    recovered: fields[2] === "1",
    floor: Number(fields[3] ?? 0),
    halted: fields[4] ?? undefined,
  };
}

/** Maps a script's marker refusal to the service's error; undefined for any other error. */
function markerFailure(error: unknown): Error | undefined {
  const message = error instanceof Error ? error.message : "";
  const lost = message.indexOf(LOST_REPLY);
  if (lost >= 0) {
    const found = message.slice(lost + LOST_REPLY.length).trim();
    return new StoreLostError(found === "none" ? "the store has no marker" : `its marker is ${found}`);
  }
  const halted = message.indexOf(HALTED_REPLY);
  if (halted >= 0) return new StoreRollbackError(message.slice(halted + HALTED_REPLY.length).trim());
  return undefined;
}

function escapeGlob(text: string): string {
  return text.replace(/[*?[\\\]]/g, "\\$&");
}

/** Connects to one Redis server (redis:// or rediss:// URL). */
export function createRedisStore(options: RedisStoreOptions): RedisCounterStore {
  const tls = options.url.startsWith("rediss://") ? { tls: tlsOptions(options.tls) } : {};
  const client = new Redis(options.url, { ...baseRedisOptions(options.commandTimeoutMs), ...tls });
  defineScripts(client);
  client.on("error", () => {
    // Connection errors surface as failed commands (503s), in /readyz and (watchConnection) in the logs.
  });
  const connection = watchConnection(client, options.onStateChange);
  const replicas = options.waitReplicas ?? 0;
  const ack =
    replicas > 0
      ? new ReplicaAck(client, { replicas, timeoutMs: options.waitTimeoutMs ?? 500, translate: connection.translate })
      : undefined;
  const silence = guardAgainstSilence(client, options.commandTimeoutMs, options.onStateChange, connection.translate);
  return new RedisCounterStore("redis", client as unknown as ScriptedClient, options.keyPrefix, {
    batchAcrossIds: true,
    ack,
    silence,
    connection,
    checks: options.checks,
  });
}
