/**
 * Sentinel's default WAIT count (replica-ack.ts LiveReplicaCount): every replica the sentinels list
 * that is not down, at least one; a failed read keeps the last count.
 */
import { expect, test } from "bun:test";
import { type ListedReplica, LiveReplicaCount, ReplicaAck } from "../../src/stores/replica-ack.ts";

test("counts the replicas without a down flag, at least one, and keeps the last count when the sentinels do not answer", async () => {
  const ok = (flags: string): ListedReplica => ({ flags, masterLinkStatus: "ok" });
  let answer: ListedReplica[] | undefined | Error = [ok("slave"), ok("slave")];
  const count = new LiveReplicaCount(async () => {
    if (answer instanceof Error) throw answer;
    return answer;
  }, 60_000);
  try {
    expect(await count.refresh()).toBe(2);
    answer = [ok("slave"), ok("s_down,slave"), ok("slave,disconnected"), ok("o_down,slave")];
    expect(await count.refresh()).toBe(1);
    // A replica that is not replicating (e.g. a restarted old primary Sentinel has not converted yet).
    answer = [ok("slave"), { flags: "slave", masterLinkStatus: "err" }];
    expect(await count.refresh()).toBe(1);
    // The promoted replica of a forced failover: still "ok" as last reported, so it still counts.
    answer = [ok("slave,promoted"), ok("slave")];
    expect(await count.refresh()).toBe(2);
    answer = [ok("s_down,slave")];
    expect(await count.refresh()).toBe(1); // never 0: a WAIT 0 would vouch for nothing
    answer = [ok("slave"), ok("slave"), ok("slave")];
    expect(await count.refresh()).toBe(3);
    answer = new Error("no sentinel answers");
    expect(await count.refresh()).toBe(3);
    answer = undefined;
    expect(await count.refresh()).toBe(3);
  } finally {
    count.close();
  }
});

test("a WAIT reads the count when it is sent, and fails short of it", async () => {
  let live = 2;
  const asked: number[] = [];
  const ack = new ReplicaAck(
    {
      wait: async (replicas) => {
        asked.push(replicas);
        return 1; // one replica acknowledges: the promoted one of a forced failover does not
      },
    },
    { replicas: () => live, timeoutMs: 10 },
  );
  await expect(ack.afterWrite()).rejects.toThrow("only 1 of 2 Redis replicas acknowledged");
  live = 1;
  await ack.afterWrite();
  expect(asked).toEqual([2, 1]);
});
