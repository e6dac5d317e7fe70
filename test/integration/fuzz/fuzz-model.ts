/**
 * What a fuzzed request should do to the counters, decided from the request alone (the oracle of
 * http-fuzz.test.ts): a GET or POST on /turno/<segment> whose segment percent-decodes to a valid id,
 * with acceptable headers and body, takes exactly one turn of that id (a POST with a valid
 * `?count=k`: k numbers); anything else, a `count` on a GET or an invalid one included, changes nothing.
 */
import { ID_PATTERN, IDEMPOTENCY_KEY_PATTERN } from "../../../src/domain/limits.ts";

export interface FuzzCase {
  readonly method: string;
  /** The request target exactly as sent. */
  readonly target: string;
  readonly headers: readonly [string, string][];
  readonly body: string;
}

export type Effect =
  /** `count`: a batch turn's k (the answer is `{"id","first","last"}`); undefined = a single turn. */
  | { readonly kind: "turn"; readonly id: string; readonly count?: number }
  | { readonly kind: "none"; readonly watch: readonly string[] };

/** The turn route's id segment of a target, or undefined if the target is another route. */
function turnSegment(target: string): string | undefined {
  let path = target;
  for (const stop of ["?", "#"]) {
    const at = path.indexOf(stop);
    if (at >= 0) path = path.slice(0, at);
  }
  if (!path.startsWith("/turno/")) return undefined;
  const segment = path.slice(7);
  return segment.includes("/") ? undefined : segment;
}

/** The service's default --max-batch-count. */
const MAX_BATCH_COUNT = 1000;

/**
 * What the target's query asks of a turn: undefined = a single turn, a number = a batch of that
 * many, "invalid" = a count the service refuses (on a GET, repeated, not 1..MAX_BATCH_COUNT).
 */
function countOf(target: string, method: string): number | "invalid" | undefined {
  const at = target.indexOf("?");
  if (at < 0) return undefined;
  const hash = target.indexOf("#", at);
  const values = new URLSearchParams(target.slice(at + 1, hash < 0 ? undefined : hash)).getAll("count");
  if (values.length === 0) return undefined;
  const raw = values[0] as string;
  if (method !== "POST" || values.length > 1 || !/^[1-9][0-9]{0,15}$/.test(raw) || Number(raw) > MAX_BATCH_COUNT)
    return "invalid";
  return Number(raw);
}

function decoded(segment: string): string | undefined {
  try {
    return decodeURIComponent(segment);
  } catch {
    return undefined;
  }
}

export function expectedEffect(c: FuzzCase, maxBodyBytes: number, base: string): Effect {
  const segment = turnSegment(c.target);
  const id = segment === undefined ? undefined : decoded(segment);
  const validId = id !== undefined && ID_PATTERN.test(id) ? id : undefined;
  const watch = validId === undefined || validId === base ? [base] : [base, validId];
  // Repeated header lines are one comma-joined value (RFC 9110 §5.3), as the service sees them.
  const keys = c.headers.filter(([name]) => name.toLowerCase() === "idempotency-key").map(([, value]) => value);
  const key = keys.length === 0 ? undefined : keys.join(", ");
  const acceptable =
    (c.method === "GET" || c.method === "POST") &&
    validId !== undefined &&
    (key === undefined || IDEMPOTENCY_KEY_PATTERN.test(key)) &&
    Buffer.byteLength(c.body, "latin1") <= maxBodyBytes;
  const count = validId === undefined ? undefined : countOf(c.target, c.method);
  if (!acceptable || count === "invalid") return { kind: "none", watch };
  return count === undefined ? { kind: "turn", id: validId } : { kind: "turn", id: validId, count };
}

/** Serializes a case as HTTP/1.1 bytes (latin1), one request per connection. */
export function serialize(c: FuzzCase): string {
  const headers = c.headers.map(([name, value]) => `${name}: ${value}\r\n`).join("");
  const length = c.body === "" ? "" : `Content-Length: ${Buffer.byteLength(c.body, "latin1")}\r\n`;
  return `${c.method} ${c.target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${length}${headers}\r\n${c.body}`;
}
