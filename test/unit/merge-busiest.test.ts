import { expect, test } from "bun:test";
import { mergeBusiest } from "../../src/cluster/supervisor.ts";

test("merging the workers' busiest ids keeps the host's highest turno and count per id, busiest first", () => {
  const merged = mergeBusiest([
    { id: "a", turno: 10, recent: 4 },
    { id: "b", turno: 7, recent: 9 },
    { id: "a", turno: 12, recent: 6 },
  ]);
  expect(merged).toEqual([
    { id: "b", turno: 7, recent: 9 },
    { id: "a", turno: 12, recent: 6 },
  ]);
});
