/**
 * The suite must catch a broken service: turnoload --verify and the wrk Lua verification are run
 * against a service that duplicates, skips or reorders numbers, and must exit 1 naming the
 * violated invariant. (A checker that cannot fail proves nothing.)
 */
import { afterEach, describe, expect, test } from "bun:test";
import { requireBinary } from "../../../harness/binaries.ts";
import { type BrokenService, type Breakage, startBrokenService } from "./broken-service.ts";
import { runCli } from "./run-cli.ts";

let service: BrokenService | undefined;
afterEach(() => {
  service?.stop();
  service = undefined;
});

const turnoload = (url: string) => [
  "--tool",
  "turnoload",
  "--target",
  url,
  "--duration",
  "2",
  "--rate",
  "400",
  "--ids",
  "3",
  "--connections",
  "8",
  "--verify",
];

describe("turnoload --verify catches a broken service", () => {
  const cases: [Breakage, RegExp][] = [
    ["duplicate", /I1 .*duplicate turnos/],
    ["skip", /I2 .*numbers never handed out/],
    ["reorder", /I3 .*smaller turno than one completed before/],
  ];
  for (const [breakage, named] of cases) {
    test(breakage, async () => {
      service = startBrokenService(breakage, 20);
      const run = await runCli("cli.ts", turnoload(service.url));
      expect(run.stderr).toMatch(named);
      expect(run.code).toBe(1);
      const verification = run.result?.verification as { ok: boolean; problems: string[] };
      expect(verification.ok).toBe(false);
    }, 60_000);
  }

  test("and passes the same service without the breakage", async () => {
    service = startBrokenService("none");
    const run = await runCli("cli.ts", turnoload(service.url));
    expect(run.stderr).toContain("verification (history): OK");
    expect(run.code).toBe(0);
  }, 60_000);
});

describe("wrk's Lua verification catches a broken service", () => {
  const wrk = (url: string) => [
    "--tool",
    "wrk",
    "--target",
    url,
    "--duration",
    "2",
    "--ids",
    "3",
    "--connections",
    "4",
    "--verify",
  ];
  test("duplicate", async () => {
    requireBinary("wrk");
    service = startBrokenService("duplicate", 20);
    const run = await runCli("cli.ts", wrk(service.url));
    expect(run.stderr).toMatch(/I1 .*duplicate turnos/);
    expect(run.code).toBe(1);
  }, 60_000);

  test("skip", async () => {
    requireBinary("wrk");
    service = startBrokenService("skip", 20);
    const run = await runCli("cli.ts", wrk(service.url));
    expect(run.stderr).toMatch(/I2: \d+ numbers never handed out, more than the \d+ failed or abandoned requests/);
    expect(run.code).toBe(1);
  }, 60_000);
});

describe("hey's counter check catches a broken service", () => {
  test("duplicate", async () => {
    requireBinary("hey");
    service = startBrokenService("duplicate", 20);
    const run = await runCli("cli.ts", [
      "--tool",
      "hey",
      "--target",
      service.url,
      "--duration",
      "1",
      "--connections",
      "4",
      "--verify",
    ]);
    expect(run.stderr).toMatch(/I1 .*the counter moved only/);
    expect(run.code).toBe(1);
  }, 60_000);
});
