/**
 * The request handler, independent of the server it runs in: `handle(request)` answers every
 * route of the API. Bun.serve (server.ts) calls it; tests may too.
 */
import type { Server } from "bun";
import type { Coalescer } from "../allocation/coalescer.ts";
import type { CounterStore, StoreMarker } from "../domain/counter-store.ts";
import { dayAt, parseSchedule, scheduleFromText } from "../domain/daily-schedule.ts";
import { EVENTS } from "../domain/events.ts";
import {
  InvalidBodyError,
  InvalidCountError,
  InvalidIdempotencyKeyError,
  InvalidScheduleError,
  MethodNotAllowedError,
  NotFoundError,
  PayloadTooLargeError,
  ScheduleNotFoundError,
  StoreTimeoutError,
  UnauthorizedError,
  UnsupportedMediaTypeError,
  UriTooLongError,
} from "../domain/errors.ts";
import { parseId } from "../domain/id.ts";
import { IDEMPOTENCY_KEY_PATTERN, isCounterValue, MAX_TURNO } from "../domain/limits.ts";
import { createAdminAuth } from "./admin-auth.ts";
import { jsonResponse, problemResponse, rangeResponse, toTurnoError, turnoResponse } from "./responses.ts";
import { pathOf, type Route, route } from "./router.ts";

/** One sampled request's span (observability/tracing.ts): `turn` wraps a turn's number, `end` takes the response. */
export interface RequestSpan {
  turn(id: string, next: () => Promise<number>): Promise<number>;
  /** `error` is what the handler threw (mapped to the answer), undefined when it answered normally. */
  end(status: number, error: unknown): void;
}

/** A span for a sampled, traced request, else undefined. */
export type RequestTracer = (request: Request, route: Route, server: Server<undefined> | undefined) => RequestSpan | undefined;

export interface AppOptions {
  readonly coalescer: Coalescer;
  readonly store: CounterStore;
  /** An operator's recovery of a store that lost data (store-guard.ts); undefined = 404. */
  readonly recover?: (floor: number) => Promise<StoreMarker>;
  readonly adminToken: string | undefined;
  readonly deadlineMs: number;
  /** Largest `count` of a batch turn (`POST /turno/:id?count=k`). Default 1000. */
  readonly maxBatchCount?: number;
  readonly maxUrlLength: number;
  readonly maxBodyBytes: number;
  /** Tracing: a span for each sampled request, ended with its response; undefined costs nothing on the hot path. */
  readonly traceRequest?: RequestTracer;
  /** Wall-clock time (epoch ms) for daily resets; give the coalescer the same one. Default Date.now. */
  readonly clock?: () => number;
}

export interface App {
  /** Bun.serve's fetch; `server` (for the client's address in traces) is optional for in-process callers. */
  handle(request: Request, server?: Server<undefined>): Response | Promise<Response>;
  /** Makes /readyz fail (graceful shutdown); turns are still served until the listener closes. */
  startDraining(): void;
  readonly draining: boolean;
}

const TURN_ALLOW = "GET, POST, OPTIONS";
const READ_ALLOW = "GET, OPTIONS";
const ADMIN_ALLOW = "PUT, DELETE";
const SCHEDULE_ALLOW = "PUT, GET, DELETE";
const SCHEDULE_SHAPE = '{"daily":"HH:MM","timeZone":"<IANA name>"}';

export function createApp(options: AppOptions): App {
  const { coalescer, store, deadlineMs } = options;
  const maxBatchCount = options.maxBatchCount ?? DEFAULT_MAX_BATCH_COUNT;
  const isAdmin = options.adminToken === undefined ? undefined : createAdminAuth(options.adminToken);
  const traceRequest = options.traceRequest;
  const clock = options.clock ?? Date.now;
  let draining = false;

  async function turn(request: Request, where: Route, span: RequestSpan | undefined): Promise<Response> {
    const id = parseId(where.rawId);
    // A turn request's body means nothing, but it is read (bounded) before a number is taken: a body
    // that is too large or malformed (bad chunked framing) is bad input and must change no counter.
    // Unread, Bun only notices the bad framing after the turn was answered (found by test/integration/fuzz).
    // Bun hides a GET's body (request.body is null) but not its Content-Length.
    const declared = request.headers.get("content-length");
    if (request.body !== null || (declared !== null && declared !== "0")) {
      await refuseBadBody(request, declared, options.maxBodyBytes);
    }
    const key = request.headers.get("idempotency-key");
    if (key !== null && !IDEMPOTENCY_KEY_PATTERN.test(key)) throw new InvalidIdempotencyKeyError();
    // Only a request target with a query can be a batch turn: the common one pays one indexOf.
    const query = request.url.indexOf("?");
    const count = query < 0 ? undefined : parseCount(request.url.slice(query + 1), request.method, maxBatchCount);
    const turnRequest = { gone: () => request.signal.aborted, idempotencyKey: key ?? undefined };
    if (count !== undefined) {
      const next = () => coalescer.nextRange(id, count, turnRequest);
      const first = await (span === undefined ? next() : span.turn(id, next));
      return rangeResponse(id, first, first + count - 1);
    }
    const turno = await (span === undefined
      ? coalescer.next(id, turnRequest)
      : span.turn(id, () => coalescer.next(id, turnRequest)));
    return turnoResponse(id, turno);
  }

  /**
   * The last issued value; for an id with a daily reset also the day it counts in. When this host's
   * day is later than the store's (nobody took a turn since the boundary), that is this host's new
   * day, with 0: the next turn is its 1.
   */
  async function actual(where: Route): Promise<Response> {
    const id = parseId(where.rawId);
    const snapshot = await withDeadline(store.peek(id), deadlineMs);
    if (snapshot.schedule === undefined) return turnoResponse(id, snapshot.value);
    const schedule = scheduleFromText(snapshot.schedule);
    const today = dayAt(schedule, clock());
    const stored = snapshot.day ?? 0;
    const counted = stored >= today.start ? dayAt(schedule, stored) : today;
    const turno = stored >= today.start ? snapshot.value : 0;
    return jsonResponse({ id, turno, day: counted.label, dayStart: new Date(counted.start).toISOString() });
  }

  /** PUT, GET and DELETE of an id's daily reset `{"daily":"HH:MM","timeZone":"<IANA>"}`. */
  async function schedule(request: Request, where: Route): Promise<Response> {
    requireAdmin(request);
    const method = request.method;
    if (method !== "PUT" && method !== "GET" && method !== "DELETE") {
      throw new MethodNotAllowedError("Use PUT, GET or DELETE on a schedule.", SCHEDULE_ALLOW);
    }
    const id = parseId(where.rawId);
    if (method === "GET") {
      const snapshot = await withDeadline(store.peek(id), deadlineMs);
      if (snapshot.schedule === undefined) throw new ScheduleNotFoundError(id);
      const { daily, timeZone } = scheduleFromText(snapshot.schedule);
      return jsonResponse({ daily, timeZone });
    }
    if (method === "DELETE") {
      await withDeadline(store.setSchedule(id, undefined, 0), deadlineMs);
      coalescer.holdSchedule(id, undefined);
      return new Response(null, { status: 204, headers: { "cache-control": "no-store" } });
    }
    const parsed = parseSchedule(await readJsonBody(request, options.maxBodyBytes, SCHEDULE_SHAPE));
    if ("refused" in parsed) throw parsed.shape ? new InvalidBodyError(parsed.refused) : new InvalidScheduleError(parsed.refused);
    // The day in progress now counts as the schedule's current day: setting a schedule resets nothing.
    await withDeadline(store.setSchedule(id, parsed.text, dayAt(parsed, clock()).start), deadlineMs);
    coalescer.holdSchedule(id, parsed.text);
    return jsonResponse({ daily: parsed.daily, timeZone: parsed.timeZone });
  }

  /** The admin API's gate: throws when it is off (404) or the token is wrong (401). */
  function requireAdmin(request: Request): void {
    if (isAdmin === undefined) throw new NotFoundError("The admin API is disabled (set TURNOMATIC_ADMIN_TOKEN).");
    if (!isAdmin(request.headers.get("authorization"))) throw new UnauthorizedError();
  }

  async function ledger(request: Request, where: Route): Promise<Response> {
    requireAdmin(request);
    if (request.method !== "GET") throw new MethodNotAllowedError("Use GET to read a ledger.", READ_ALLOW);
    const id = parseId(where.rawId);
    const { issued, delivered } = await withDeadline(store.ledger(id), deadlineMs);
    return jsonResponse({ id, issued, delivered, lost: Math.max(0, issued - delivered) });
  }

  async function recover(request: Request): Promise<Response> {
    requireAdmin(request);
    if (options.recover === undefined) throw new NotFoundError("This store has no recovery.");
    if (request.method !== "POST") throw new MethodNotAllowedError('Use POST with {"floor": n}.', "POST");
    const floor = await readNumberBody(request, options.maxBodyBytes, "floor");
    const marker = await options.recover(floor);
    return jsonResponse({ status: "recovered", uid: marker.uid, generation: marker.generation, floor: marker.floor });
  }

  async function admin(request: Request, where: Route): Promise<Response> {
    requireAdmin(request);
    const method = request.method;
    if (method !== "PUT" && method !== "DELETE") {
      throw new MethodNotAllowedError("Use PUT to set a counter or DELETE to reset it.", ADMIN_ALLOW);
    }
    const id = parseId(where.rawId);
    const value = method === "DELETE" ? 0 : await readNumberBody(request, options.maxBodyBytes, "turno");
    const snapshot = await withDeadline(store.set(id, value), deadlineMs);
    coalescer.forget(id, snapshot.epoch);
    return turnoResponse(id, snapshot.value);
  }

  async function ready(): Promise<Response> {
    if (draining) return jsonResponse({ status: "draining", store: store.kind }, 503);
    try {
      await withDeadline(store.ping(), Math.min(deadlineMs, 1000));
      return jsonResponse({ status: "ready", store: store.kind });
    } catch (error) {
      const turnoError = toTurnoError(error);
      // "Unexpected error; it has been logged." must be true here too.
      if (turnoError.status === 500 && EVENTS.internalError.active) EVENTS.internalError.publish({ error });
      return jsonResponse({ status: "store-unavailable", store: store.kind, detail: turnoError.message }, 503);
    }
  }

  function dispatch(request: Request, where: Route, span: RequestSpan | undefined): Response | Promise<Response> {
    const method = request.method;
    switch (where.name) {
      case "turno":
        // While draining, turns are still served: only /readyz fails, so load balancers move away
        // before the listener closes and no request is refused.
        return method === "GET" || method === "POST" ? turn(request, where, span) : notAllowed(method, TURN_ALLOW);
      case "actual":
        return method === "GET" ? actual(where) : notAllowed(method, READ_ALLOW);
      case "admin":
        return admin(request, where);
      case "ledger":
        return ledger(request, where);
      case "schedule":
        return schedule(request, where);
      case "recover":
        return recover(request);
      case "healthz":
        return jsonResponse({ status: "ok" });
      case "readyz":
        return ready();
      default:
        throw new NotFoundError("Unknown path; the API is /turno/:id and /turno/:id/actual.");
    }
  }

  /** Awaits an async route's answer, maps errors, and reports the response (no extra promise per request). */
  async function settle(
    pending: Promise<Response>,
    where: Route,
    method: string,
    startedAt: number,
    span: RequestSpan | undefined,
  ): Promise<Response> {
    let response: Response;
    let thrown: unknown;
    try {
      response = await pending;
    } catch (error) {
      thrown = error;
      const turnoError = toTurnoError(error);
      if (turnoError.status === 500 && EVENTS.internalError.active) EVENTS.internalError.publish({ error });
      response = problemResponse(turnoError, where.path);
    }
    if (EVENTS.response.active) EVENTS.response.publish({ route: where.name, method, status: response.status, startedAt });
    span?.end(response.status, thrown);
    return response;
  }

  function handle(request: Request, server?: Server<undefined>): Response | Promise<Response> {
    const startedAt = performance.now();
    const url = request.url;
    const path = pathOf(url);
    const where = route(path);
    const span = traceRequest === undefined ? undefined : traceRequest(request, where, server);
    let response: Response;
    if (url.length > options.maxUrlLength) {
      // Answered at the boundary, with instance "/": the over-long target is not echoed back.
      response = problemResponse(new UriTooLongError(options.maxUrlLength), "/");
    } else {
      try {
        const result = dispatch(request, where, span);
        if (result instanceof Promise) return settle(result, where, request.method, startedAt, span);
        response = result;
      } catch (error) {
        return settle(Promise.reject(error), where, request.method, startedAt, span);
      }
    }
    if (EVENTS.response.active)
      EVENTS.response.publish({ route: where.name, method: request.method, status: response.status, startedAt });
    span?.end(response.status, undefined);
    return response;
  }

  return {
    handle,
    startDraining: () => {
      draining = true;
    },
    get draining() {
      return draining;
    },
  };
}

const DEFAULT_MAX_BATCH_COUNT = 1000;
const COUNT_PATTERN = /^[1-9][0-9]{0,15}$/;

/**
 * A batch turn's `count` from the query: undefined when there is none (a single turn), else a whole
 * number in [1, max], given once, on POST only (a GET must stay one number: a kiosk or a prefetching
 * client must not burn k). Anything else throws InvalidCountError (400), before any number is taken.
 */
function parseCount(query: string, method: string, max: number): number | undefined {
  const values = new URLSearchParams(query).getAll("count");
  if (values.length === 0) return undefined;
  const usage = `count must be a whole number from 1 to ${max} (option --max-batch-count), given once, on POST /turno/:id?count=k`;
  const raw = values[0] as string;
  let why: string | undefined;
  if (method !== "POST") why = `${method} takes no count`;
  else if (values.length > 1) why = "count was given more than once";
  else if (!COUNT_PATTERN.test(raw) || Number(raw) > max) why = `got '${raw.slice(0, 32)}'`;
  if (why === undefined) return Number(raw);
  throw new InvalidCountError(`${usage}; ${why}.`);
}

function notAllowed(method: string, allow: string): Response {
  // OPTIONS is answered, not refused (RFC 9110 §9.3.7); nothing here ever increments.
  if (method === "OPTIONS") return new Response(null, { status: 204, headers: { allow, "cache-control": "no-store" } });
  throw new MethodNotAllowedError(`${method} is not allowed here; use ${allow}.`, allow);
}

/** Reads and discards a body; throws when it is too large or cannot be read. */
async function refuseBadBody(request: Request, declared: string | null, maxBodyBytes: number): Promise<void> {
  const tooLarge = `The body is over ${maxBodyBytes} bytes; send none.`;
  if (Number(declared ?? "0") > maxBodyBytes) throw new PayloadTooLargeError(tooLarge);
  const body = await readBody(request, maxBodyBytes, "; send none");
  if (body.byteLength > maxBodyBytes) throw new PayloadTooLargeError(tooLarge);
}

/**
 * Reads a body; a read that Bun refuses becomes the 4xx it is, never a 500. Bun rejects the
 * read when a chunked body grows past maxRequestBodySize (it answers 413 itself and closes) or when
 * the framing is bad (400). Either way the client sent it, so it must not be logged as
 * http.internal_error nor counted as a 500 (issue 13: an authenticated chunked PUT over the limit).
 */
async function readBody(request: Request, maxBodyBytes: number, hint: string): Promise<ArrayBuffer> {
  try {
    return await request.arrayBuffer();
  } catch (error) {
    if (/maxRequestBodySize/.test((error as Error)?.message ?? ""))
      throw new PayloadTooLargeError(`The body is over ${maxBodyBytes} bytes${hint}.`);
    throw new InvalidBodyError(`The request body could not be read (malformed chunked encoding?)${hint}.`);
  }
}

/** Reads an admin body as JSON (`shape` names what to send); throws (415, 413, 400) when it is not usable. */
async function readJsonBody(request: Request, maxBodyBytes: number, shape: string): Promise<unknown> {
  const contentType = request.headers.get("content-type") ?? "";
  if (!contentType.toLowerCase().startsWith("application/json")) {
    throw new UnsupportedMediaTypeError(`Send the body as application/json: ${shape}.`);
  }
  const bytes = await readBody(request, maxBodyBytes, "");
  if (bytes.byteLength > maxBodyBytes) throw new PayloadTooLargeError(`The body is over ${maxBodyBytes} bytes.`);
  try {
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    throw new InvalidBodyError(`The body is not valid JSON; send ${shape}.`);
  }
}

/** Parses an admin body `{"<field>": n}`; throws when it is not usable. */
async function readNumberBody(request: Request, maxBodyBytes: number, field: "turno" | "floor"): Promise<number> {
  const body = await readJsonBody(request, maxBodyBytes, `{"${field}": n}`);
  const value = (body as Record<string, unknown> | null)?.[field];
  if (typeof body !== "object" || body === null || !isCounterValue(value)) {
    throw new InvalidBodyError(`Send {"${field}": n} with n a whole number from 0 to ${MAX_TURNO}.`);
  }
  // JSON's -0 is the number 0 (RFC 8259 has one zero for integers): accepted as 0, and normalized
  // here so no store, log or ledger ever sees a negative zero (Object.is(-0, 0) is false).
  return value === 0 ? 0 : value;
}

/** Rejects with StoreTimeoutError when `promise` has not settled within `ms`. */
function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreTimeoutError(ms)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
