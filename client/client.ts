/**
 * TurnomaticClient: turns that are exactly-once from the caller's side.
 *
 * `next(id)` sends `POST /turno/:id` with a fresh Idempotency-Key and, when an attempt fails in a
 * way that may be passing (no answer, a timeout, a 5xx such as the server's 503 with Retry-After),
 * sends THE SAME key again. The server records each key with the number it got, atomically with the
 * reservation (src/allocation/coalescer.ts), so a retry of a request whose number was already taken
 * (its response lost with a dying host or connection) gets that number back instead of a new one:
 * no gap, no duplicate. That holds while the key lives on the server (`--idempotency-ttl`, default
 * 24 h) and for the same id; see docs/guides/client-guide.md for what the client does not promise.
 *
 * Only fetch, AbortController, setTimeout and crypto.randomUUID are used: it runs on Node 20+,
 * Bun, Deno and browsers.
 */
import {
  AbortedError,
  AttemptError,
  BadResponseError,
  errorFromResponse,
  InvalidIdError,
  InvalidRequestError,
  type Problem,
  TurnomaticError,
  UnavailableError,
} from "./errors.ts";
import { parseRetryAfter, type RetryOptions, type RetryPolicy, retryDelayMs, retryPolicy } from "./retry.ts";

/** The part of fetch the client uses; pass your own (a proxy agent, instrumentation) as `fetch`. */
export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

export interface RetryEvent {
  /** The attempt that just failed (1 = the first). */
  readonly attempt: number;
  /** How long the client waits before the next attempt (ms). */
  readonly delayMs: number;
  readonly error: AttemptError;
  /** The key the next attempt sends again (undefined for `actual`, which needs none). */
  readonly key: string | undefined;
}

export interface TurnomaticClientOptions {
  /** The service or its load balancer, e.g. `http://127.0.0.1:7017`. */
  readonly baseUrl: string;
  /** Default: the global fetch. */
  readonly fetch?: FetchLike;
  /** Retry bounds; see RetryOptions for the defaults. */
  readonly retry?: RetryOptions;
  /**
   * Longest wait for one attempt's answer (ms). Keep it above the server's `--deadline-ms` (default
   * 1000), so the server answers its own bounded 503 before the client gives up on an attempt.
   * Default 5000.
   */
  readonly timeoutMs?: number;
  /** Extra headers on every request (e.g. a tracing header). */
  readonly headers?: Readonly<Record<string, string>>;
  /** Called before each wait between attempts (metrics, logs). Must not throw. */
  readonly onRetry?: (event: RetryEvent) => void;
  /** Makes a fresh Idempotency-Key. Default crypto.randomUUID() (browsers: secure contexts only). */
  readonly createKey?: () => string;
  /** Source of jitter in [0, 1). Default Math.random. */
  readonly random?: () => number;
}

export interface CallOptions {
  /**
   * The Idempotency-Key of this logical call. Omit it for a new call; pass the key of an earlier
   * call (from its error's `key`, or one you stored before calling) to resume that same call: the
   * answer is the number that call got, if the server still knows the key.
   */
  readonly key?: string;
  /** Gives up the whole call (every attempt and wait); the error is an AbortedError with the key. */
  readonly signal?: AbortSignal;
}

export interface Turn {
  readonly id: string;
  readonly turno: number;
  /** The call's Idempotency-Key. */
  readonly key: string;
  /** Attempts it took (1 = no retry). */
  readonly attempts: number;
}

export interface TurnRange {
  readonly id: string;
  /** The k consecutive numbers are first..last. */
  readonly first: number;
  readonly last: number;
  readonly key: string;
  readonly attempts: number;
}

export interface Current {
  readonly id: string;
  /** The last number issued (0 if none). */
  readonly turno: number;
}

/** Same rule as the server (src/domain/id.ts); such ids need no percent-encoding. */
const ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Same rule as the server (src/domain/limits.ts). */
const KEY_PATTERN = /^[\x21-\x7e]{1,128}$/;

interface Attempt {
  readonly method: "GET" | "POST";
  readonly path: string;
  readonly key: string | undefined;
  readonly signal: AbortSignal | undefined;
}

export class TurnomaticClient {
  readonly #baseUrl: string;
  readonly #fetch: FetchLike;
  readonly #retry: RetryPolicy;
  readonly #timeoutMs: number;
  readonly #headers: Readonly<Record<string, string>>;
  readonly #onRetry: ((event: RetryEvent) => void) | undefined;
  readonly #createKey: () => string;
  readonly #random: () => number;

  constructor(options: TurnomaticClientOptions) {
    let url: URL;
    try {
      url = new URL(options.baseUrl);
    } catch {
      throw new TypeError(
        `@turnomatic/client: baseUrl must be an absolute URL like http://127.0.0.1:7017; got '${options.baseUrl}'`,
      );
    }
    this.#baseUrl = url.href.replace(/\/+$/, "");
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#retry = retryPolicy(options.retry);
    this.#timeoutMs = options.timeoutMs ?? 5000;
    if (!(Number.isFinite(this.#timeoutMs) && this.#timeoutMs > 0))
      throw new TypeError("@turnomatic/client: timeoutMs must be a number of ms > 0");
    this.#headers = options.headers ?? {};
    this.#onRetry = options.onRetry;
    this.#createKey = options.createKey ?? (() => crypto.randomUUID());
    this.#random = options.random ?? Math.random;
  }

  /** A fresh Idempotency-Key: store it before calling `next(id, { key })` to survive your own crash. */
  createKey(): string {
    return this.#createKey();
  }

  /** The next number of `id`, exactly once per logical call (see the module comment). */
  async next(id: string, options: CallOptions = {}): Promise<Turn> {
    const key = this.#keyOf(options);
    checkId(id, key);
    const { body, attempts } = await this.#call({ method: "POST", path: `/turno/${id}`, key, signal: options.signal });
    const turno = (body as { turno?: unknown }).turno;
    if ((body as { id?: unknown }).id !== id || !isTurno(turno)) throw badResponse(body, key);
    return { id, turno, key, attempts };
  }

  /** `count` consecutive numbers of `id` (all or nothing), exactly once per logical call. */
  async batch(id: string, count: number, options: CallOptions = {}): Promise<TurnRange> {
    const key = this.#keyOf(options);
    checkId(id, key);
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new InvalidRequestError(`count must be a whole number >= 1; got ${count}`, {
        code: "TURNO_CLIENT_ERR_INVALID_ARGUMENT",
        key,
      });
    }
    const path = `/turno/${id}?count=${count}`;
    const { body, attempts } = await this.#call({ method: "POST", path, key, signal: options.signal });
    const { first, last } = body as { first?: unknown; last?: unknown };
    if ((body as { id?: unknown }).id !== id || !isTurno(first) || !isTurno(last) || last - first + 1 !== count)
      throw badResponse(body, key);
    return { id, first, last, key, attempts };
  }

  /** The last number issued for `id` (0 if none); takes none. Retried like a turn (it is safe). */
  async actual(id: string, options: Pick<CallOptions, "signal"> = {}): Promise<Current> {
    checkId(id, undefined);
    const { body } = await this.#call({ method: "GET", path: `/turno/${id}/actual`, key: undefined, signal: options.signal });
    const turno = (body as { turno?: unknown }).turno;
    if ((body as { id?: unknown }).id !== id || !(turno === 0 || isTurno(turno))) throw badResponse(body, undefined);
    return { id, turno };
  }

  #keyOf(options: CallOptions): string {
    const key = options.key ?? this.#createKey();
    if (!KEY_PATTERN.test(key)) {
      throw new InvalidRequestError("an Idempotency-Key must be 1-128 visible ASCII characters", {
        code: "TURNO_CLIENT_ERR_INVALID_ARGUMENT",
      });
    }
    return key;
  }

  /** Attempts until a success, a final error, the attempt bound or the time budget. */
  async #call(attempt: Attempt): Promise<{ body: unknown; attempts: number }> {
    const startedAt = Date.now();
    const policy = this.#retry;
    for (let n = 1; ; n++) {
      throwIfAborted(attempt);
      const remaining = policy.totalMs - (Date.now() - startedAt);
      const outcome = await this.#once(attempt, Math.max(1, Math.min(this.#timeoutMs, remaining)));
      if (!(outcome instanceof TurnomaticError)) return { body: outcome, attempts: n };
      if (!(outcome instanceof AttemptError)) throw outcome;
      const delayMs = retryDelayMs(n, policy, outcome.retryAfterMs, this.#random);
      const elapsed = Date.now() - startedAt;
      if (n >= policy.attempts || elapsed + delayMs >= policy.totalMs) throw giveUp(outcome, n, elapsed, attempt.key, policy);
      this.#onRetry?.({ attempt: n, delayMs, error: outcome, key: attempt.key });
      await sleep(delayMs, attempt);
    }
  }

  /** One HTTP exchange: the parsed 2xx body, or the typed error it amounts to (never throws one). */
  async #once(attempt: Attempt, timeoutMs: number): Promise<unknown> {
    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const onAbort = () => controller.abort();
    attempt.signal?.addEventListener("abort", onAbort, { once: true });
    const headers: Record<string, string> = { accept: "application/json", ...this.#headers };
    if (attempt.key !== undefined) headers["idempotency-key"] = attempt.key;
    try {
      const response = await this.#fetch(`${this.#baseUrl}${attempt.path}`, {
        method: attempt.method,
        headers,
        signal: controller.signal,
      });
      const text = await response.text();
      if (response.ok) return parseJson(text) ?? badResponse(text, attempt.key);
      const retryAfterMs = parseRetryAfter(response.headers.get("retry-after"));
      return errorFromResponse(response.status, parseJson(text) as Problem | undefined, attempt.key, retryAfterMs);
    } catch (error) {
      throwIfAborted(attempt);
      if (timedOut) {
        return new AttemptError(`no answer within ${timeoutMs} ms (option timeoutMs)`, {
          code: "TURNO_CLIENT_ERR_TIMEOUT",
          key: attempt.key,
          cause: error,
        });
      }
      const reason = error instanceof Error ? error.message : String(error);
      return new AttemptError(`no answer from ${this.#baseUrl}: ${reason}`, {
        code: "TURNO_CLIENT_ERR_CONNECTION",
        key: attempt.key,
        cause: error,
      });
    } finally {
      clearTimeout(timer);
      attempt.signal?.removeEventListener("abort", onAbort);
    }
  }
}

function checkId(id: string, key: string | undefined): void {
  if (!ID_PATTERN.test(id)) {
    throw new InvalidIdError("the id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'", {
      code: "TURNO_ERR_INVALID_ID",
      key,
    });
  }
}

function isTurno(value: unknown): value is number {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 1;
}

function parseJson(text: string): unknown {
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === "object" && value !== null ? value : undefined;
  } catch {
    return undefined;
  }
}

function badResponse(body: unknown, key: string | undefined): BadResponseError {
  const shown = (typeof body === "string" ? body : JSON.stringify(body)).slice(0, 200);
  return new BadResponseError(`the answer is not the API's JSON (is baseUrl the Turnomatic service?): ${shown}`, {
    code: "TURNO_CLIENT_ERR_BAD_RESPONSE",
    status: 200,
    key,
  });
}

function giveUp(
  last: AttemptError,
  attempts: number,
  elapsedMs: number,
  key: string | undefined,
  policy: RetryPolicy,
): UnavailableError {
  const bound =
    attempts >= policy.attempts
      ? `${attempts} attempts (option retry.attempts)`
      : `the time budget: ${attempts} attempts in ${elapsedMs} ms, the next wait would pass retry.totalMs = ${policy.totalMs}`;
  const resume = key === undefined ? "" : ` Retry later with next(id, { key: "${key}" }) to get this call's number.`;
  return new UnavailableError(`gave up after ${bound}; last: ${last.message}.${resume}`, {
    code: "TURNO_CLIENT_ERR_UNAVAILABLE",
    status: last.status,
    key,
    retryAfterMs: last.retryAfterMs,
    problem: last.problem,
    attempts,
    cause: last,
  });
}

function throwIfAborted(attempt: Attempt): void {
  if (attempt.signal?.aborted !== true) return;
  throw new AbortedError("the call was aborted by its signal", {
    code: "TURNO_CLIENT_ERR_ABORTED",
    key: attempt.key,
    cause: attempt.signal.reason,
  });
}

function sleep(ms: number, attempt: Attempt): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      try {
        throwIfAborted(attempt);
      } catch (error) {
        reject(error);
      }
    };
    const timer = setTimeout(() => {
      attempt.signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    attempt.signal?.addEventListener("abort", onAbort, { once: true });
  });
}
