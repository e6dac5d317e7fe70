/** A SQLite file written before batch turns (keys without `size`) opens, keeps its keys, and takes batch keys. */
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore } from "../../src/stores/sqlite-store.ts";

const dir = mkdtempSync(join(tmpdir(), "turnomatic-schema-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("an idempotency_keys table without size gets the column; old keys replay as one number", async () => {
  const path = join(dir, "old.db");
  const old = new Database(path, { create: true });
  old.run("CREATE TABLE counters (id TEXT PRIMARY KEY, value INTEGER NOT NULL, epoch INTEGER NOT NULL) WITHOUT ROWID");
  old.run(
    "CREATE TABLE idempotency_keys (id TEXT NOT NULL, key TEXT NOT NULL, turno INTEGER NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (id, key)) WITHOUT ROWID",
  );
  old.run("INSERT INTO counters (id, value, epoch) VALUES ('s', 7, 0)");
  old.run("INSERT INTO idempotency_keys (id, key, turno, expires_at) VALUES ('s', 'old-key', 7, ?)", [Date.now() + 60_000]);
  old.close();
  const store = new SqliteStore({ path, busyTimeoutMs: 1000 });
  try {
    const replay = await store.reserve({ id: "s", n: 1, keys: [{ position: 0, key: "old-key" }], keyTtlSeconds: 60 });
    expect(replay).toMatchObject({ count: 0, keyed: [{ turno: 7, replayed: true }] });
    expect(replay.keyed[0]?.count).toBeUndefined();
    const batch = await store.reserve({ id: "s", n: 1, sizes: [5], keys: [{ position: 0, key: "new" }], keyTtlSeconds: 60 });
    expect(batch).toMatchObject({ first: 8, count: 5 });
    const again = await store.reserve({ id: "s", n: 1, sizes: [5], keys: [{ position: 0, key: "new" }], keyTtlSeconds: 60 });
    expect(again.keyed).toEqual([{ turno: 8, replayed: true, count: 5 }]);
  } finally {
    await store.close();
  }
});
