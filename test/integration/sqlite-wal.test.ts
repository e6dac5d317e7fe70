/**
 * Issue 13.4: the SQLite WAL stays bounded. Under a stream of writes it stays near
 * wal_autocheckpoint pages (1000 x 4 KiB) plus one batch; once writes pause it is emptied by a
 * TRUNCATE checkpoint (without it the WAL file kept its high-water size for good). Also prints the
 * disk the counters take per id, the figure docs/guides/operations.md ("SQLite disk") quotes.
 */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SqliteStore } from "../../src/stores/sqlite-store.ts";

const dir = mkdtempSync(join(tmpdir(), "turnomatic-wal-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const size = (path: string) => {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
};

test("the WAL stays near wal_autocheckpoint under writes and is emptied when they pause", async () => {
  const path = join(dir, "turnomatic.db");
  const store = new SqliteStore({ path, busyTimeoutMs: 1000, idleCheckpointMs: 300 });
  try {
    const ids = 150_000;
    let largestWal = 0;
    for (let first = 0; first < ids; first += 500) {
      const batch = Array.from({ length: 500 }, (_, i) => store.reserve({ id: `wal-test-id-${first + i}`, n: 1 }));
      await Promise.all(batch);
      largestWal = Math.max(largestWal, size(`${path}-wal`));
    }
    const bound = (1000 + 600) * (4096 + 24); // autocheckpoint pages + one batch of 500 new rows, with frame headers
    expect(largestWal).toBeGreaterThan(1000 * 4096); // the autocheckpoint threshold was crossed
    expect(largestWal).toBeLessThanOrEqual(bound);
    const deadline = performance.now() + 5000;
    while (size(`${path}-wal`) > 0 && performance.now() < deadline) await Bun.sleep(100);
    expect(size(`${path}-wal`)).toBe(0);
    console.log(
      `[sqlite-wal] ${ids} ids: database ${size(path)} B (${(size(path) / ids).toFixed(1)} B/id), largest WAL ${largestWal} B (bound ${bound} B), WAL after the pause 0 B`,
    );
    expect((await store.peek("wal-test-id-0")).value).toBe(1);
  } finally {
    await store.close();
  }
}, 120_000);
