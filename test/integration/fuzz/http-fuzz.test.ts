/**
 * Property-based fuzzing (fast-check) of ids, percent-encodings, methods, headers and bodies against
 * a running service (memory store, admin API disabled). Every case must: get no 5xx; take exactly
 * one turn of exactly the id the model (fuzz-model.ts) says, or change nothing (the affected ids read
 * back through /actual); leave a sentinel counter untouched; and the service must stay healthy and
 * keep serving valid requests. ~600 cases by default, >= 10k with TURNOMATIC_FULL=1.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import { type ServiceProcess, startService } from "../../../harness/service.ts";
import { expectedEffect, type FuzzCase, serialize } from "./fuzz-model.ts";
import { rawExchange } from "./raw-http.ts";

const FULL = process.env.TURNOMATIC_FULL === "1";
const RUNS = FULL ? 3000 : 150;
const MAX_BODY = 1024;
const SENTINEL = "fz-sentinel";
const SENTINEL_VALUE = 3;

let service: ServiceProcess;
let serial = 0;
let cases = 0;
const statuses = new Map<string, number>();

beforeAll(async () => {
  service = await startService({
    store: "memory:",
    env: { TURNOMATIC_ADMIN_TOKEN: "", TURNOMATIC_MAX_BODY_BYTES: String(MAX_BODY), TURNOMATIC_LOG_LEVEL: "error" },
  });
  for (let i = 0; i < SENTINEL_VALUE; i++) await fetch(`${service.url}/turno/${SENTINEL}`);
});
afterAll(async () => {
  process.stderr.write(`http-fuzz: ${cases} cases; statuses: ${JSON.stringify(Object.fromEntries(statuses))}\n`);
  await service?.stop();
});

async function actual(id: string): Promise<number> {
  const response = await fetch(`${service.url}/turno/${id}/actual`);
  const body = (await response.json()) as { turno: number };
  return body.turno;
}

async function healthy(): Promise<void> {
  expect(service.process.exitCode).toBeNull();
  expect((await fetch(`${service.url}/healthz`)).status).toBe(200);
  expect(await actual(SENTINEL)).toBe(SENTINEL_VALUE);
}

/** Sends one case built around a fresh id and checks it against the model. */
async function check(build: (base: string) => FuzzCase): Promise<void> {
  const base = `fz${(serial++).toString(36)}x${process.pid.toString(36)}`;
  const c = build(base);
  const effect = expectedEffect(c, MAX_BODY, base);
  // Segments made only of generated pieces may name an id an earlier case used: compare with before.
  const watched = effect.kind === "turn" ? [effect.id] : effect.watch;
  const before = await Promise.all(watched.map(actual));
  const answer = await rawExchange(service.port, serialize(c), { timeoutMs: 5000 });
  cases++;
  const key = answer.status === null ? "closed" : String(answer.status);
  statuses.set(key, (statuses.get(key) ?? 0) + 1);
  const what = `${JSON.stringify(serialize(c).slice(0, 300))} -> ${JSON.stringify(answer.raw.slice(0, 300))}`;
  if (answer.status !== null && answer.status >= 500) throw new Error(`5xx for ${what}`);
  if (answer.timedOut) throw new Error(`no answer within 5 s for ${what}`);
  const after = await Promise.all(watched.map(actual));
  if (effect.kind === "turn") {
    const expected = (before[0] as number) + (effect.count ?? 1);
    if (answer.status !== 200) throw new Error(`a valid turn request was not served: ${what}`);
    const body = answer.raw.slice(answer.raw.indexOf("\r\n\r\n") + 4);
    const wanted =
      effect.count === undefined
        ? `{"id":"${effect.id}","turno":${expected}}`
        : `{"id":"${effect.id}","first":${(before[0] as number) + 1},"last":${expected}}`;
    if (body !== wanted) throw new Error(`wrong body (expected ${wanted}) for ${what}`);
    if (after[0] !== expected) throw new Error(`counter of ${effect.id} is ${after[0]}, not ${expected}, after ${what}`);
  } else {
    watched.forEach((id, i) => {
      if (after[i] !== before[i]) throw new Error(`counter ${id} changed from ${before[i]} to ${after[i]} by ${what}`);
    });
  }
  if (cases % 100 === 0) await healthy();
}

// Pieces of ids: valid characters, characters that must be refused, and their percent-encodings.
const validChar = fc.constantFrom(..."ABCXYZabcxyz0189_-".split(""));
const hostileChar = fc.constantFrom(
  ..."!$&'()*+,;=:@.~%\"<>[]\\^`{|}".split(""),
  "\u00f1",
  "\u20ac",
  "\u0000",
  "\u007f",
  " ",
  "\t",
  "/",
);
const encode = (ch: string, lower: boolean) => {
  const hex = [...Buffer.from(ch, "utf8")].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("");
  return lower ? hex : hex.toUpperCase();
};
/** One piece of a raw segment: a literal safe character, or any character percent-encoded. */
const piece = fc.oneof(
  validChar,
  fc.tuple(fc.oneof(validChar, hostileChar), fc.boolean()).map(([ch, lower]) => encode(ch, lower)),
  fc.constantFrom(
    "%",
    "%2",
    "%G0",
    "%zz",
    "%%",
    "%C3",
    "%E2%82",
    "!",
    "~",
    ".",
    ":",
    "@",
    "'",
    "*",
    "(",
    ")",
    "$",
    "+",
    ",",
    ";",
    "=",
  ),
);

const tokenMethod = fc.oneof(
  fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "get", "Post", "PROPFIND", "M-SEARCH"),
  fc.stringMatching(/^[A-Z]{1,12}$/),
);
const headerName = fc
  .stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,30}$/)
  .filter((n) => !/^(host|connection|content-length|transfer-encoding|expect|upgrade|te|trailer)$/i.test(n));
const headerValue = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,60}[\x21-\x7e])?$/);
const header = fc.oneof(
  fc.tuple(headerName, headerValue),
  fc.tuple(
    fc.constant("Idempotency-Key"),
    fc.oneof(
      headerValue,
      fc.string({ minLength: 129, maxLength: 200 }).map((s) => s.replace(/[^\x21-\x7e]/g, "k")),
    ),
  ),
);

describe("fuzzing the HTTP API", () => {
  test("ids and percent-encodings: a turn of exactly the decoded id, or nothing", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(piece, { minLength: 0, maxLength: 12 }),
        fc.boolean(),
        fc.nat(3),
        async (pieces, suffix, where) => {
          await check((base) => {
            const junk = pieces.join("");
            const segment = where === 0 ? junk : suffix ? `${base}${junk}` : `${junk}${base}`;
            return { method: "GET", target: `/turno/${segment}`, headers: [], body: "" };
          });
        },
      ),
      { numRuns: RUNS },
    );
  }, 600_000);

  test("encoded valid ids are the same id", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.boolean(), { minLength: 1, maxLength: 20 }), fc.boolean(), async (which, lower) => {
        await check((base) => ({
          method: "POST",
          target: `/turno/${[...base].map((ch, i) => (which[i % which.length] ? encode(ch, lower) : ch)).join("")}`,
          headers: [],
          body: "",
        }));
      }),
      { numRuns: Math.ceil(RUNS / 3) },
    );
  }, 600_000);

  test("methods: only GET and POST ever take a turn", async () => {
    await fc.assert(
      fc.asyncProperty(
        tokenMethod,
        fc.constantFrom(
          "",
          "/actual",
          "/",
          "/x",
          "?a=1",
          "?count=3",
          "?count=0",
          "?count=1001",
          "?count=-2",
          "?count=1.5",
          "?count=2&count=2",
          "?count=",
          "?a=1&count=%32",
        ),
        async (method, tail) => {
          await check((base) => ({ method, target: `/turno/${base}${tail}`, headers: [], body: "" }));
        },
      ),
      { numRuns: RUNS },
    );
  }, 600_000);

  test("headers and bodies: served when acceptable, otherwise refused without a change", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("GET", "POST"),
        fc.array(header, { maxLength: 8 }),
        fc.oneof(
          fc.constant(""),
          fc.string({ maxLength: 200 }),
          fc.integer({ min: 900, max: 3000 }).map((n) => "b".repeat(n)),
        ),
        async (method, headers, body) => {
          await check((base) => ({ method, target: `/turno/${base}`, headers, body }));
        },
      ),
      { numRuns: RUNS },
    );
  }, 600_000);

  test("the service is still healthy and serves valid requests", async () => {
    await healthy();
    const response = await fetch(`${service.url}/turno/fz-after`);
    expect(await response.json()).toEqual({ id: "fz-after", turno: 1 });
    expect(cases).toBeGreaterThanOrEqual(FULL ? 10_000 : 500);
  });
});
