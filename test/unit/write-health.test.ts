/**
 * src/stores/write-health.ts with real SQLite errors: a read-only database (SQLITE_READONLY)
 * starts an episode, reported once however many writes fail, and the next success ends it once;
 * lock contention (SQLITE_BUSY from a second connection) starts none.
 */
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type WriteEpisode, WriteHealth } from "../../src/stores/write-health.ts";

const dir = mkdtempSync(join(tmpdir(), "turnomatic-write-health-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function errorOf(step: () => unknown): unknown {
  try {
    step();
  } catch (error) {
    return error;
  }
  throw new Error("the step did not fail");
}

test("a read-only database starts one episode; a success ends it; contention starts none", () => {
  const path = join(dir, "t.db");
  const writer = new Database(path, { create: true });
  writer.run("PRAGMA journal_mode = WAL");
  writer.run("CREATE TABLE t (k INTEGER PRIMARY KEY)");
  const reader = new Database(path, { readonly: true });
  const readOnly = errorOf(() => reader.run("INSERT INTO t VALUES (1)"));
  expect((readOnly as { code: string }).code).toStartWith("SQLITE_READONLY");
  const other = new Database(path);
  other.run("PRAGMA busy_timeout = 0");
  writer.run("BEGIN IMMEDIATE");
  const busy = errorOf(() => other.run("BEGIN IMMEDIATE"));
  writer.run("ROLLBACK");
  expect((busy as { code: string }).code).toStartWith("SQLITE_BUSY");

  const episodes: WriteEpisode[] = [];
  const failures: string[] = [];
  const health = new WriteHealth({ onEpisode: (e) => episodes.push(e), onWriteFailure: (code) => failures.push(code) });
  health.failed(busy);
  expect(health.failing).toBe(false);
  for (let i = 0; i < 5; i++) health.failed(readOnly);
  health.failed(readOnly, true); // the readiness probe: not counted
  expect(health.failing).toBe(true);
  expect(health.describe()).toContain("SQLITE_READONLY");
  expect(failures.length).toBe(5);
  health.succeeded();
  health.succeeded();
  expect(health.failing).toBe(false);
  expect(episodes.map((e) => e.state)).toEqual(["failing", "recovered"]);
  expect(episodes[1]?.failedWrites).toBe(5);
  for (const db of [writer, reader, other]) db.close();
});
