/**
 * Sentinel's default WAIT count (replica-ack.ts LiveReplicaCount): every replica Sentinel could
 * promote, at least one; a failed read keeps the last count.
 */
import { expect, test } from "bun:test";
import { type ListedReplica, LiveReplicaCount, ReplicaAck } from "../../src/stores/replica-ack.ts";

let port = 7000;
/** A replica as the sentinels list it: by default a new, healthy one (down-after 1 s). */
function listed(fields: Partial<ListedReplica> = {}): ListedReplica {
  return {
    name: `10.0.0.1:${port++}`,
    flags: "slave",
    roleReported: "slave",
    masterLinkStatus: "ok",
    masterLinkDownTimeMs: 0,
    downAfterMs: 1000,
    ...fields,
  };
}

test("counts every replica Sentinel could promote, at least one, and keeps the last count when the sentinels do not answer", async () => {
  let answer: ListedReplica[] | undefined | Error = [listed(), listed()];
  const count = new LiveReplicaCount(async () => {
    if (answer instanceof Error) throw answer;
    return answer;
  }, 60_000);
  try {
    expect(await count.refresh()).toBe(2);
    answer = [listed(), listed({ flags: "s_down,slave" }), listed({ flags: "o_down,slave" })];
    expect(await count.refresh()).toBe(1);
    // Disconnected from the sentinel we asked, as every replica is just after a switch of primary:
    // the sentinel that leads the next failover may still promote it, so it counts.
    answer = [listed(), listed({ flags: "slave,disconnected", masterLinkStatus: "err" })];
    expect(await count.refresh()).toBe(2);
    // Link listed as down, for less than 10 x down-after (or never up since it started: -1000):
    // Sentinel may still promote it, so it counts.
    answer = [
      listed(),
      listed({ masterLinkStatus: "err", masterLinkDownTimeMs: 2000 }),
      listed({ masterLinkStatus: "err", masterLinkDownTimeMs: -1000 }),
    ];
    expect(await count.refresh()).toBe(3);
    // Down for longer than 10 x down-after: Sentinel will not promote it, nor does the count wait for it.
    answer = [listed(), listed({ masterLinkStatus: "err", masterLinkDownTimeMs: 10_001 })];
    expect(await count.refresh()).toBe(1);
    // An old primary Sentinel lists as a replica but has not converted yet (role master): it replicates
    // nothing, but Sentinel may promote it as soon as it is converted, so it counts (WAITs fail meanwhile).
    answer = [listed(), listed({ roleReported: "master", masterLinkStatus: "err" })];
    expect(await count.refresh()).toBe(2);
    // ... also when it was flagged down before: once s_down clears it counts again.
    answer = [listed(), listed({ flags: "s_down,slave", roleReported: "master" })];
    expect(await count.refresh()).toBe(1);
    // The promoted replica of a failover, as the leading sentinel lists it: counts whatever its link and role.
    answer = [listed({ flags: "slave,promoted", roleReported: "master", masterLinkStatus: "err" }), listed()];
    expect(await count.refresh()).toBe(2);
    answer = [listed({ flags: "s_down,slave" })];
    expect(await count.refresh()).toBe(1); // never 0: a WAIT 0 would vouch for nothing
    answer = [listed(), listed(), listed()];
    expect(await count.refresh()).toBe(3);
    answer = new Error("no sentinel answers");
    expect(await count.refresh()).toBe(3);
    answer = undefined;
    expect(await count.refresh()).toBe(3);
  } finally {
    count.close();
  }
});

test("a replica that turns master (being promoted, as a sentinel other than the leader lists it) counts while it is listed, however long", async () => {
  const a = listed();
  const b = listed();
  let answer: ListedReplica[] = [a, b];
  const count = new LiveReplicaCount(async () => answer, 60_000);
  try {
    expect(await count.refresh()).toBe(2);
    answer = [a, { ...b, roleReported: "master", masterLinkStatus: "err" }];
    for (let refresh = 0; refresh < 30; refresh++) expect(await count.refresh()).toBe(2);
    // The switch: the sentinels list the new primary's replicas, among them the old primary, still a
    // master until Sentinel converts it. It counts, although it never counted before: a forced failover
    // just after its conversion promoted it behind the other replica (nemesis seed 20261202 after the
    // fourth fix, t+87 s), so the other replica alone must not vouch for the writes meanwhile.
    const old = listed({ roleReported: "master", masterLinkStatus: "err" });
    answer = [a, old];
    expect(await count.refresh()).toBe(2);
    expect(await count.refresh()).toBe(2);
    answer = [a, { ...old, roleReported: "slave", masterLinkStatus: "ok" }]; // converted
    expect(await count.refresh()).toBe(2);
  } finally {
    count.close();
  }
});

test("a process that starts during a failover counts an instance with role master at its first refresh and after", async () => {
  const promoted = listed({ roleReported: "master", masterLinkStatus: "err" });
  let answer: ListedReplica[] = [listed(), promoted];
  const count = new LiveReplicaCount(async () => answer, 60_000);
  try {
    expect(await count.refresh()).toBe(2);
    expect(await count.refresh()).toBe(2); // and keeps counting it while it is listed
    answer = [listed(), listed({ roleReported: "master" })];
    expect(await count.refresh()).toBe(2); // a newcomer with role master, after the first refresh, too
  } finally {
    count.close();
  }
});

test("until the sentinels first answer, a WAIT waits for the count, and fails after the WAIT timeout", async () => {
  let answer: ListedReplica[] | undefined;
  const count = new LiveReplicaCount(async () => answer, 60_000, 50);
  try {
    await count.refresh();
    const first = count.current();
    expect(first).toBeInstanceOf(Promise);
    await expect(first).rejects.toThrow("replicas to wait for are unknown");
    answer = [listed(), listed()];
    const waiting = count.current();
    await count.refresh();
    expect(await waiting).toBe(2);
    expect(count.current()).toBe(2);
  } finally {
    count.close();
  }
});

test("a WAIT reads the count when it is sent, and fails short of it", async () => {
  let live = 2;
  const asked: number[] = [];
  const ack = new ReplicaAck(
    {
      status: "ready",
      stream: {},
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

test("a WAIT is not sent when the connection changed while it waited for the count", async () => {
  const client = { status: "ready", stream: {} as unknown, waits: 0 };
  let release: (count: number) => void = () => {};
  const ack = new ReplicaAck(
    {
      get status() {
        return client.status;
      },
      get stream() {
        return client.stream;
      },
      wait: async () => {
        client.waits++;
        return 2; // a fresh connection's WAIT: every replica has its (no) writes
      },
    },
    { replicas: () => new Promise<number>((resolve) => (release = resolve)), timeoutMs: 10 },
  );
  const reconnected = ack.afterWrite();
  await Bun.sleep(1);
  client.stream = {}; // ioredis reconnected: to the promoted replica after a failover
  release(2);
  await expect(reconnected).rejects.toThrow("connection to Redis changed");
  const reconnecting = ack.afterWrite();
  await Bun.sleep(1);
  client.status = "reconnecting"; // a WAIT now would wait in ioredis's queue for the next connection
  release(2);
  await expect(reconnecting).rejects.toThrow("connection to Redis changed");
  expect(client.waits).toBe(0);
});

test("tells when the replicas counted change, with why the others do not count, and not otherwise", async () => {
  const healthy = listed();
  const other = listed();
  let answer = [healthy, other];
  const changes: Array<{ replicas: number; counted: readonly string[]; left: readonly string[] }> = [];
  const count = new LiveReplicaCount(
    async () => answer,
    60_000,
    50,
    (change) => changes.push(change),
  );
  try {
    await count.refresh();
    await count.refresh();
    answer = [healthy, { ...other, flags: "s_down,slave" }];
    await count.refresh();
    await count.refresh();
    expect(changes).toEqual([
      { replicas: 2, counted: [healthy.name, other.name], left: [] },
      { replicas: 1, counted: [healthy.name], left: [`${other.name} (s_down,slave, role slave, link ok 0 ms)`] },
    ]);
  } finally {
    count.close();
  }
});
