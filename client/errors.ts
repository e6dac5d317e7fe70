/**
 * Typed errors of the client. Every error is a `TurnomaticError` with a stable `code`: the server's
 * problem code (`TURNO_ERR_*`, docs/reference/errors.md) when the server answered one, or a client code
 * (`TURNO_CLIENT_ERR_*`) when there was no usable answer. Branch on the class or on `code`, never on
 * the message.
 *
 * Every error of a turn call carries the call's Idempotency-Key (`key`): pass it back as
 * `next(id, { key })` to resume the same logical call later (within the server's key lifetime).
 */

/** The server's problem codes (src/domain/errors.ts; a unit test keeps this list in step). */
export const SERVER_CODES = [
  "TURNO_ERR_INVALID_ID",
  "TURNO_ERR_INVALID_BODY",
  "TURNO_ERR_INVALID_IDEMPOTENCY_KEY",
  "TURNO_ERR_INVALID_COUNT",
  "TURNO_ERR_INVALID_SCHEDULE",
  "TURNO_ERR_UNAUTHORIZED",
  "TURNO_ERR_NOT_FOUND",
  "TURNO_ERR_SCHEDULE_NOT_FOUND",
  "TURNO_ERR_METHOD_NOT_ALLOWED",
  "TURNO_ERR_COUNTER_EXHAUSTED",
  "TURNO_ERR_PAYLOAD_TOO_LARGE",
  "TURNO_ERR_URI_TOO_LONG",
  "TURNO_ERR_UNSUPPORTED_MEDIA_TYPE",
  "TURNO_ERR_IDEMPOTENCY_KEY_REUSED",
  "TURNO_ERR_STORE_UNAVAILABLE",
  "TURNO_ERR_STORE_TIMEOUT",
  "TURNO_ERR_OVERLOADED",
  "TURNO_ERR_SHUTTING_DOWN",
  "TURNO_ERR_STORE_ROLLBACK",
  "TURNO_ERR_STORE_LOST",
  "TURNO_ERR_CLIENT_CLOSED_REQUEST",
  "TURNO_ERR_INTERNAL",
] as const;

/** Codes the client raises itself, when there is no problem document to read. */
export const CLIENT_CODES = [
  /** No HTTP answer: connection refused, reset or closed before the response. */
  "TURNO_CLIENT_ERR_CONNECTION",
  /** No answer within `timeoutMs` (one attempt). */
  "TURNO_CLIENT_ERR_TIMEOUT",
  /** Every attempt failed with a retryable error, or the next wait would pass the time budget. */
  "TURNO_CLIENT_ERR_UNAVAILABLE",
  /** The caller's AbortSignal fired. */
  "TURNO_CLIENT_ERR_ABORTED",
  /** A 2xx whose body is not what the API promises (a proxy in the way, a wrong baseUrl). */
  "TURNO_CLIENT_ERR_BAD_RESPONSE",
  /** An argument the server would refuse (checked before anything is sent). */
  "TURNO_CLIENT_ERR_INVALID_ARGUMENT",
] as const;

export type ServerCode = (typeof SERVER_CODES)[number];
export type ClientCode = (typeof CLIENT_CODES)[number];
/** A server newer than this client may send codes it does not know: they pass through as strings. */
export type ErrorCode = ServerCode | ClientCode | (string & {});

/** An RFC 9457 problem document as the server sends it. */
export interface Problem {
  readonly type?: string;
  readonly title?: string;
  readonly status?: number;
  readonly detail?: string;
  readonly code?: string;
  readonly instance?: string;
}

export interface TurnomaticErrorInit {
  readonly code: ErrorCode;
  /** HTTP status; 0 when there was no HTTP answer. */
  readonly status?: number;
  readonly key?: string;
  readonly retryAfterMs?: number;
  readonly problem?: Problem;
  readonly cause?: unknown;
}

export class TurnomaticError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  /** The Idempotency-Key of the call (turn calls only): resume with `next(id, { key })`. */
  readonly key: string | undefined;
  /** The server's Retry-After, in ms, when it sent one. */
  readonly retryAfterMs: number | undefined;
  readonly problem: Problem | undefined;

  constructor(message: string, init: TurnomaticErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.name = new.target.name;
    this.code = init.code;
    this.status = init.status ?? 0;
    this.key = init.key;
    this.retryAfterMs = init.retryAfterMs;
    this.problem = init.problem;
  }
}

/** 400 TURNO_ERR_INVALID_ID, or an id refused before sending (same rule as the server). */
export class InvalidIdError extends TurnomaticError {}

/** 409 TURNO_ERR_COUNTER_EXHAUSTED: the counter is at Number.MAX_SAFE_INTEGER (or has fewer than a batch's count left). */
export class CounterExhaustedError extends TurnomaticError {}

/**
 * Any other 4xx: a bad key or count (400), or a key reused with another count (422
 * TURNO_ERR_IDEMPOTENCY_KEY_REUSED: a key records one call, a single turn or a batch of one size).
 * Retrying the same request cannot help.
 */
export class InvalidRequestError extends TurnomaticError {}

/** One attempt's retryable failure: a 5xx (503 with Retry-After), a connection failure or a timeout. */
export class AttemptError extends TurnomaticError {}

/** Every attempt failed (or the time budget ran out); `cause` is the last attempt's AttemptError. */
export class UnavailableError extends TurnomaticError {
  readonly attempts: number;
  declare readonly cause: AttemptError;

  constructor(message: string, init: TurnomaticErrorInit & { readonly attempts: number; readonly cause: AttemptError }) {
    super(message, init);
    this.attempts = init.attempts;
  }
}

/** The caller's AbortSignal fired; a turn call may still have taken its number (resume with `key`). */
export class AbortedError extends TurnomaticError {}

/** A 2xx whose body is not the API's shape. */
export class BadResponseError extends TurnomaticError {}

/** The typed error for an HTTP answer that is not a success. */
export function errorFromResponse(
  status: number,
  problem: Problem | undefined,
  key: string | undefined,
  retryAfterMs: number | undefined,
): TurnomaticError {
  const code = typeof problem?.code === "string" ? problem.code : `HTTP_${status}`;
  const detail = typeof problem?.detail === "string" ? problem.detail : `the server answered ${status}`;
  const init: TurnomaticErrorInit = { code, status, key, retryAfterMs, problem };
  const message = `${code}: ${detail}`;
  if (code === "TURNO_ERR_INVALID_ID") return new InvalidIdError(message, init);
  if (code === "TURNO_ERR_COUNTER_EXHAUSTED") return new CounterExhaustedError(message, init);
  if (isRetryableStatus(status)) return new AttemptError(message, init);
  return new InvalidRequestError(message, init);
}

/**
 * Statuses worth another attempt with the same key: 503 (the server's bounded refusal, with
 * Retry-After), 500 (docs/reference/errors.md marks it retryable), 502/504 (a load balancer lost the backend),
 * 429 (a proxy's rate limit). With an Idempotency-Key a retry can never take a second number.
 */
export function isRetryableStatus(status: number): boolean {
  return status === 503 || status === 500 || status === 502 || status === 504 || status === 429;
}
