/** The store witness: records merged across process slots, and a write failure reported, never thrown. */
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mergeRecords, Witness } from "../../src/stores/witness.ts";

const DIR = mkdtempSync(join(tmpdir(), "turnomatic-witness-"));
afterAll(() => rmSync(DIR, { recursive: true, force: true }));

const record = (generation: number, seq: number, highest: number) => ({
  uid: `u${generation}`,
  generation,
  seen: { m: seq },
  highest,
});

test("merging keeps the newest generation's highest sequences and the highest number of all", () => {
  expect(mergeRecords([])).toBeUndefined();
  expect(mergeRecords([record(1, 50, 900), record(2, 3, 10), record(2, 7, 20)])).toEqual({
    uid: "u2",
    generation: 2,
    seen: { m: 7 },
    highest: 900,
  });
});

test("each process slot writes its own file; reading merges them", () => {
  const a = new Witness({ dir: DIR, store: "redis://x prefix:", slot: "1" });
  const b = new Witness({ dir: DIR, store: "redis://x prefix:", slot: "2" });
  const other = new Witness({ dir: DIR, store: "redis://y prefix:", slot: "1" });
  a.update(() => record(1, 10, 100));
  b.update(() => record(1, 30, 50));
  other.update(() => record(5, 999, 999));
  a.close();
  b.close();
  other.close();
  expect(a.read()).toEqual({ uid: "u1", generation: 1, seen: { m: 30 }, highest: 100 });
});

test("a folder that cannot be written is reported once (and its recovery), never thrown", () => {
  const blocker = join(DIR, "not-a-folder");
  writeFileSync(blocker, "a file where the folder should be");
  const errors: Array<string | undefined> = [];
  const witness = new Witness({
    dir: join(blocker, "state"),
    store: "s",
    slot: "main",
    onWriteError: (error) => errors.push(error?.message),
  });
  witness.update(() => record(1, 1, 1));
  witness.flush();
  witness.update(() => record(1, 2, 2));
  witness.flush();
  expect(errors.length).toBe(1);
  expect(errors[0]).toBeString();
  witness.close();
});
