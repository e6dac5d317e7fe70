/**
 * Every failure the service reports has a stable machine code (`TURNO_ERR_<AREA>_<WHAT>`), an HTTP
 * status and a title; the HTTP layer turns them into RFC 9457 problem details. Codes are listed in
 * docs/reference/errors.md (a unit test keeps the two in sync) and are never reused for another meaning.
 */
export const ERROR_CODES = {
  TURNO_ERR_INVALID_ID: { status: 400, title: "Invalid id" },
  TURNO_ERR_INVALID_BODY: { status: 400, title: "Invalid request body" },
  TURNO_ERR_INVALID_IDEMPOTENCY_KEY: { status: 400, title: "Invalid Idempotency-Key header" },
  TURNO_ERR_INVALID_COUNT: { status: 400, title: "Invalid count" },
  TURNO_ERR_INVALID_SCHEDULE: { status: 400, title: "Invalid daily-reset schedule" },
  TURNO_ERR_UNAUTHORIZED: { status: 401, title: "Missing or wrong admin token" },
  TURNO_ERR_NOT_FOUND: { status: 404, title: "Not found" },
  TURNO_ERR_SCHEDULE_NOT_FOUND: { status: 404, title: "No daily-reset schedule" },
  TURNO_ERR_METHOD_NOT_ALLOWED: { status: 405, title: "Method not allowed" },
  TURNO_ERR_COUNTER_EXHAUSTED: { status: 409, title: "Counter exhausted" },
  TURNO_ERR_PAYLOAD_TOO_LARGE: { status: 413, title: "Request body too large" },
  TURNO_ERR_URI_TOO_LONG: { status: 414, title: "URI too long" },
  TURNO_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: "Unsupported media type" },
  TURNO_ERR_IDEMPOTENCY_KEY_REUSED: { status: 422, title: "Idempotency-Key reused with another count" },
  TURNO_ERR_STORE_UNAVAILABLE: { status: 503, title: "Counter store unavailable" },
  TURNO_ERR_STORE_TIMEOUT: { status: 503, title: "Counter store too slow" },
  TURNO_ERR_OVERLOADED: { status: 503, title: "Too many requests waiting" },
  TURNO_ERR_SHUTTING_DOWN: { status: 503, title: "Server is shutting down" },
  TURNO_ERR_STORE_ROLLBACK: { status: 503, title: "Counter store went backwards" },
  TURNO_ERR_STORE_LOST: { status: 503, title: "Counter store lost its data" },
  TURNO_ERR_CLIENT_CLOSED_REQUEST: { status: 499, title: "Client closed the request" },
  TURNO_ERR_INTERNAL: { status: 500, title: "Internal error" },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/**
 * Base class of every error the service answers with; `retryAfterSeconds` marks it retryable and
 * `headers` are sent with the answer (Allow, WWW-Authenticate). A handler fails in one way: it
 * throws one of these, and the HTTP layer turns it into the problem response (src/http/responses.ts).
 */
export class TurnoError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly retryAfterSeconds: number | undefined;
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(code: ErrorCode, message: string, retryAfterSeconds?: number, headers?: Readonly<Record<string, string>>) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.retryAfterSeconds = retryAfterSeconds;
    this.headers = headers;
  }
}

/** A body that is not what the route takes (the message says what to send). */
export class InvalidBodyError extends TurnoError {
  constructor(detail: string) {
    super("TURNO_ERR_INVALID_BODY", detail);
  }
}

export class InvalidIdempotencyKeyError extends TurnoError {
  constructor() {
    super("TURNO_ERR_INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1-128 visible ASCII characters.");
  }
}

/** A batch turn's `count` out of its rules (the message names the rule broken). */
export class InvalidCountError extends TurnoError {
  constructor(detail: string) {
    super("TURNO_ERR_INVALID_COUNT", detail);
  }
}

/** A daily-reset schedule whose time or zone is not usable (the message says which and why). */
export class InvalidScheduleError extends TurnoError {
  constructor(detail: string) {
    super("TURNO_ERR_INVALID_SCHEDULE", detail);
  }
}

export class UnauthorizedError extends TurnoError {
  constructor() {
    super("TURNO_ERR_UNAUTHORIZED", "Send Authorization: Bearer <TURNOMATIC_ADMIN_TOKEN>.", undefined, {
      "www-authenticate": 'Bearer realm="turnomatic-admin"',
    });
  }
}

export class NotFoundError extends TurnoError {
  constructor(detail: string) {
    super("TURNO_ERR_NOT_FOUND", detail);
  }
}

export class ScheduleNotFoundError extends TurnoError {
  constructor(id: string) {
    super("TURNO_ERR_SCHEDULE_NOT_FOUND", `Counter '${id}' has no daily reset; PUT one here.`);
  }
}

/** `allow`: the methods the path takes, sent as the Allow header (RFC 9110 §15.5.6). */
export class MethodNotAllowedError extends TurnoError {
  constructor(detail: string, allow: string) {
    super("TURNO_ERR_METHOD_NOT_ALLOWED", detail, undefined, { allow });
  }
}

export class PayloadTooLargeError extends TurnoError {
  constructor(detail: string) {
    super("TURNO_ERR_PAYLOAD_TOO_LARGE", detail);
  }
}

export class UriTooLongError extends TurnoError {
  constructor(maxUrlLength: number) {
    super("TURNO_ERR_URI_TOO_LONG", `The request target is longer than ${maxUrlLength} characters.`);
  }
}

export class UnsupportedMediaTypeError extends TurnoError {
  constructor(detail: string) {
    super("TURNO_ERR_UNSUPPORTED_MEDIA_TYPE", detail);
  }
}

/** Anything else that was thrown: a bug. The answer says no more; the error itself is logged. */
export class InternalError extends TurnoError {
  constructor() {
    super("TURNO_ERR_INTERNAL", "Unexpected error; it has been logged.");
  }
}

export class InvalidIdError extends TurnoError {
  constructor() {
    super("TURNO_ERR_INVALID_ID", "The id must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-' after percent-decoding.");
  }
}

export class CounterExhaustedError extends TurnoError {
  /** `count`: the numbers a batch turn asked for (all or nothing); undefined for a single turn. */
  constructor(id: string, count?: number) {
    super(
      "TURNO_ERR_COUNTER_EXHAUSTED",
      count === undefined
        ? `Counter '${id}' reached ${Number.MAX_SAFE_INTEGER} (Number.MAX_SAFE_INTEGER) and issues no more turns; an operator may reset it with DELETE /admin/turno/${id}.`
        : `Counter '${id}' has fewer than the ${count} numbers asked for left below ${Number.MAX_SAFE_INTEGER} (Number.MAX_SAFE_INTEGER); none was taken. A smaller count may still fit; an operator may reset it with DELETE /admin/turno/${id}.`,
    );
  }
}

/**
 * A key is recorded with its first number and its count; a request that reuses it with another count
 * is another request, not a retry. It is refused (and takes no number) rather than answered with the
 * recorded range, which is not what it asked for (the IETF httpapi Idempotency-Key draft, "Error
 * Scenarios": a key reused with a different payload gets 422).
 */
export class IdempotencyKeyReusedError extends TurnoError {
  constructor(recorded: number, asked: number) {
    super(
      "TURNO_ERR_IDEMPOTENCY_KEY_REUSED",
      `This Idempotency-Key was used for a request of ${recorded} number${recorded === 1 ? "" : "s"}, not ${asked}; retry with the same count, or use a new key for a new request.`,
    );
  }
}

export class StoreUnavailableError extends TurnoError {
  constructor(detail: string) {
    // A detail quoted from elsewhere may end with its own period ("Connection is closed.").
    super("TURNO_ERR_STORE_UNAVAILABLE", `The counter store is unavailable: ${detail.replace(/\.+$/, "")}. Retry later.`, 1);
  }
}

export class StoreTimeoutError extends TurnoError {
  constructor(deadlineMs: number) {
    super(
      "TURNO_ERR_STORE_TIMEOUT",
      `The counter store did not answer within the ${deadlineMs} ms deadline (option --deadline-ms). Retry later.`,
      1,
    );
  }
}

export class OverloadedError extends TurnoError {
  constructor(limitName: string, limit: number) {
    super("TURNO_ERR_OVERLOADED", `Too many requests are waiting (${limitName} is ${limit}). Retry later.`, 1);
  }
}

export class ShuttingDownError extends TurnoError {
  constructor() {
    super("TURNO_ERR_SHUTTING_DOWN", "This server is draining for shutdown; retry on another instance.", 1);
  }
}

/**
 * The store went backwards: its sequence fell below one a process had seen acknowledged (a restore
 * from an older backup, a failover to a lagging replica). Every process refuses until an operator
 * recovers the store (docs/guides/operations.md, "When the store loses data").
 */
export class StoreRollbackError extends TurnoError {
  constructor(detail: string) {
    super(
      "TURNO_ERR_STORE_ROLLBACK",
      `The counter store went backwards (${detail}); no number is issued until an operator recovers it (POST /admin/store/recover). Retry later.`,
      5,
    );
  }
}

/**
 * The store has no marker, or another one: it was emptied, replaced, or never initialized. Issuing
 * from it could repeat numbers already handed out, so nothing is issued until an operator recovers it.
 */
export class StoreLostError extends TurnoError {
  constructor(detail: string) {
    super(
      "TURNO_ERR_STORE_LOST",
      `The counter store lost its data or is not the one this service used (${detail}); no number is issued until an operator recovers it (POST /admin/store/recover). Retry later.`,
      5,
    );
  }
}

/** The client went away before its number was ready; nobody reads this answer (nginx's 499). */
export class ClientClosedError extends TurnoError {
  constructor() {
    super("TURNO_ERR_CLIENT_CLOSED_REQUEST", "The client closed the connection before its turn was issued.");
  }
}

/**
 * The codes of the errors that stop the start (exit 2) instead of answering a request: they have no
 * HTTP status. docs/reference/errors.md lists them too (a test keeps both lists in sync).
 */
export const START_ERROR_CODES = {
  TURNO_ERR_CONFIG_INVALID: "a bad option or store setting",
  TURNO_ERR_METRICS_PORT_IN_USE: "the metrics port is held by another process",
  TURNO_ERR_TRACING_CONFIG: "a tracing variable that cannot be honoured",
} as const;

export type StartErrorCode = keyof typeof START_ERROR_CODES;

/** Base class of the errors that stop the start; main.ts logs the code and exits 2. */
export class StartError extends Error {
  readonly code: StartErrorCode;

  constructor(code: StartErrorCode, message: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
  }
}

/**
 * A bad option or store setting found at start: the process exits 2 with this message, which names
 * the option. Defined here so that stores, an inner layer, can raise it without importing the
 * config module.
 */
export class ConfigError extends StartError {
  constructor(message: string) {
    super("TURNO_ERR_CONFIG_INVALID", message);
  }
}
