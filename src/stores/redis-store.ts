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
import type { CounterSnapshot, CounterStore, Fence, IdempotentReservation, Reservation } from "../domain/counter-store.ts";
import { MAX_TURNO } from "../domain/limits.ts";
import { StoreUnavailableError } from "../domain/errors.ts";
import { type ConnectionStateListener, type ConnectionWatch, watchConnection } from "./connection-events.ts";
import { type CheckedNode, type CheckOptions, checkAtStart, type StartCheck } from "./redis-checks.ts";
import { RESERVE_IDEMPOTENT_SCRIPT, RESERVE_MANY_SCRIPT, RESERVE_SCRIPT, SET_SCRIPT } from "./redis-scripts.ts";
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

/** Script replies: decimal strings (see redis-scripts.ts for why not integers). */
type Reply = [string, string, string, string, string?];

/** The scripted commands ioredis adds to a client by defineCommand. */
interface TurnoCommands {
  turnoReserve(counterKey: string, n: number, max: number, floor: string, epoch: number): Promise<Reply>;
  turnoReserveIdempotent(
    counterKey: string,
    idemKey: string,
    n: number,
    max: number,
    floor: string,
    epoch: number,
    ttlMs: number,
  ): Promise<Reply>;
  turnoSet(counterKey: string, value: string): Promise<[string, string]>;
  /** numberOfKeys, keys..., max, then (n, floor, epoch) per key. */
  turnoReserveMany(...args: Array<string | number>): Promise<string[]>;
}

/** Most counters in one RESERVE_MANY call, to bound the time one script holds the server. */
const MAX_IDS_PER_CALL = 256;

interface PendingReservation {
  readonly key: string;
  readonly n: number;
  readonly fence: Fence | undefined;
  readonly resolve: (reservation: Reservation) => void;
  readonly reject: (error: unknown) => void;
}

/** A client of either kind (single Redis or Cluster) with our scripts defined. */
export type ScriptedClient = Pick<Redis, "hmget" | "ping" | "config" | "quit" | "disconnect" | "info"> & TurnoCommands;

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

/** Adds the reservation scripts to a client (single or cluster). */
export function defineScripts(client: Redis | import("ioredis").Cluster): void {
  client.defineCommand("turnoReserve", { numberOfKeys: 1, lua: RESERVE_SCRIPT });
  client.defineCommand("turnoReserveIdempotent", { numberOfKeys: 2, lua: RESERVE_IDEMPOTENT_SCRIPT });
  client.defineCommand("turnoSet", { numberOfKeys: 1, lua: SET_SCRIPT });
  client.defineCommand("turnoReserveMany", { lua: RESERVE_MANY_SCRIPT });
}

/**
 * The store logic on top of any scripted client, so the single-node, Sentinel and Cluster stores
 * share it and differ only in how they connect.
 */
export class RedisCounterStore implements CounterStore {
  readonly kind: string;
  protected readonly client: ScriptedClient;
  readonly #prefix: string;
  readonly #batchAcrossIds: boolean;
  readonly #ack: ReplicaAck | undefined;
  readonly #silence: SilenceGuard | undefined;
  readonly #connection: ConnectionWatch | undefined;
  readonly #checks: CheckOptions;
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
  }

  #watch<T>(call: Promise<T>): Promise<T> {
    return this.#silence === undefined ? call : this.#silence.watch(call);
  }

  counterKey(id: string): string {
    return `${this.#prefix}{${id}}`;
  }

  async reserve(id: string, n: number, fence?: Fence): Promise<Reservation> {
    const reservation = await this.#reserveUnacknowledged(id, n, fence);
    await this.#ack?.afterWrite();
    return reservation;
  }

  #reserveUnacknowledged(id: string, n: number, fence: Fence | undefined): Promise<Reservation> {
    if (!this.#batchAcrossIds) return this.#reserveOne(this.counterKey(id), n, fence);
    return new Promise((resolve, reject) => {
      this.#pending.push({ key: this.counterKey(id), n, fence, resolve, reject });
      if (this.#pending.length === 1) setImmediate(() => this.#flush());
    });
  }

  async #reserveOne(key: string, n: number, fence: Fence | undefined): Promise<Reservation> {
    const [first, count, epoch, fenced] = await this.#watch(
      this.client.turnoReserve(key, n, MAX_TURNO, fence === undefined ? "" : String(fence.floor), fence?.epoch ?? 0),
    );
    return toReservation(first, count, epoch, fenced);
  }

  /** Sends the reservations collected during one event-loop turn, up to MAX_IDS_PER_CALL per call. */
  #flush(): void {
    const pending = this.#pending;
    this.#pending = [];
    if (pending.length === 1) {
      const only = pending[0] as PendingReservation;
      this.#reserveOne(only.key, only.n, only.fence).then(only.resolve, only.reject);
      return;
    }
    for (let start = 0; start < pending.length; start += MAX_IDS_PER_CALL) {
      const chunk = pending.slice(start, start + MAX_IDS_PER_CALL);
      const args: Array<string | number> = [chunk.length, ...chunk.map((p) => p.key), MAX_TURNO];
      for (const p of chunk) args.push(p.n, p.fence === undefined ? "" : String(p.fence.floor), p.fence?.epoch ?? 0);
      this.#watch(this.client.turnoReserveMany(...args)).then(
        (reply) => {
          for (let i = 0; i < chunk.length; i++) {
            const at = i * 4;
            (chunk[i] as PendingReservation).resolve(
              toReservation(reply[at] as string, reply[at + 1] as string, reply[at + 2] as string, reply[at + 3] as string),
            );
          }
        },
        (error: unknown) => {
          for (const p of chunk) p.reject(error);
        },
      );
    }
  }

  async reserveIdempotent(id: string, key: string, ttlSeconds: number, fence?: Fence): Promise<IdempotentReservation> {
    const counterKey = this.counterKey(id);
    const [first, count, epoch, fenced, replayed] = await this.#watch(
      this.client.turnoReserveIdempotent(
        counterKey,
        `${counterKey}:idem:${key}`,
        1,
        MAX_TURNO,
        fence === undefined ? "" : String(fence.floor),
        fence?.epoch ?? 0,
        Math.max(1, Math.round(ttlSeconds * 1000)),
      ),
    );
    await this.#ack?.afterWrite();
    return {
      first: Number(first),
      count: Number(count),
      epoch: Number(epoch),
      fenced: fenced === "1",
      replayed: replayed === "1",
    };
  }

  async peek(id: string): Promise<CounterSnapshot> {
    const [value, epoch] = await this.#watch(this.client.hmget(this.counterKey(id), "v", "e"));
    return { value: Number(value ?? 0), epoch: Number(epoch ?? 0) };
  }

  async set(id: string, value: number): Promise<CounterSnapshot> {
    const [stored, epoch] = await this.#watch(this.client.turnoSet(this.counterKey(id), String(value)));
    await this.#ack?.afterWrite();
    return { value: Number(stored), epoch: Number(epoch) };
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

function toReservation(first: string, count: string, epoch: string, fenced: string): Reservation {
  return { first: Number(first), count: Number(count), epoch: Number(epoch), fenced: fenced === "1" };
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
