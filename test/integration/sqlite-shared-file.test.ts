/**
 * Several processes (the workers of one host) open the same new SQLite file at the same instant.
 * Switching it to WAL and creating the tables used to fail in one of them with "database is locked"
 * (SQLITE_BUSY without waiting), so that worker exited at start (seen in a clean CI run of
 * workers.test.ts). Every process must open the store, and their numbers must be 1..N.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const HELPER = join(import.meta.dir, "sqlite-open-main.ts");
const PROCESSES = 4;
const ROUNDS = 8;
const dir = mkdtempSync(join(tmpdir(), "turnomatic-sqlite-shared-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test(`${PROCESSES} processes opening one new SQLite file at once all open it (${ROUNDS} rounds)`, async () => {
  for (let round = 0; round < ROUNDS; round++) {
    const path = join(dir, `round-${round}`, "turnomatic.db");
    const startAt = Date.now() + 300;
    const outputs = await Promise.all(
      Array.from({ length: PROCESSES }, async () => {
        const child = Bun.spawn([process.execPath, HELPER, path, String(startAt)], { stdout: "pipe", stderr: "inherit" });
        const out = await new Response(child.stdout).text();
        await child.exited;
        return out.trim();
      }),
    );
    expect(
      outputs.filter((line) => !line.startsWith("ok ")),
      `round ${round}`,
    ).toEqual([]);
    const numbers = outputs.map((line) => Number(line.split(" ")[1])).sort((a, b) => a - b);
    expect(numbers).toEqual(Array.from({ length: PROCESSES }, (_, i) => i + 1));
  }
}, 60_000);
