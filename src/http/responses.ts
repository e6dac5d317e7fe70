/**
 * Every response the API sends is built here, so headers stay consistent: JSON bodies,
 * `Cache-Control: no-store` (a cached GET would hand one number to two people), and RFC 9457
 * problem details for errors.
 */
import { ERROR_CODES, InternalError, TurnoError } from "../domain/errors.ts";

const JSON_HEADERS = { "content-type": "application/json", "cache-control": "no-store" } as const;

/** `{"id":"<id>","turno":<n>}`; ids are validated to [A-Za-z0-9_-], so they need no escaping. */
export function turnoResponse(id: string, turno: number): Response {
  return new Response(`{"id":"${id}","turno":${turno}}`, { headers: JSON_HEADERS });
}

/** A batch turn's answer `{"id":"<id>","first":<n>,"last":<m>}`: the numbers first..last. */
export function rangeResponse(id: string, first: number, last: number): Response {
  return new Response(`{"id":"${id}","first":${first},"last":${last}}`, { headers: JSON_HEADERS });
}

export function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: JSON_HEADERS });
}

/**
 * RFC 9457 problem details with our stable `code`: the one way an error becomes an answer. Retryable
 * errors carry Retry-After; an error's own headers (Allow, WWW-Authenticate) go with it.
 */
export function problemResponse(error: TurnoError, instance: string): Response {
  const body = {
    type: `urn:turnomatic:problem:${error.code}`,
    title: ERROR_CODES[error.code].title,
    status: error.status,
    detail: error.message,
    code: error.code,
    instance,
  };
  const headers: Record<string, string> = {
    "content-type": "application/problem+json",
    "cache-control": "no-store",
    ...error.headers,
  };
  if (error.retryAfterSeconds !== undefined) headers["retry-after"] = String(error.retryAfterSeconds);
  return new Response(JSON.stringify(body), { status: error.status, headers });
}

/** Maps anything thrown to a TurnoError; unknown errors become a 500 without internals. */
export function toTurnoError(error: unknown): TurnoError {
  return error instanceof TurnoError ? error : new InternalError();
}
