/** turnoload's run ends on time even when the server goes away mid-run; what was lost counts as errors. */
import { expect, test } from "bun:test";
import { join } from "node:path";
import { OpenLoopGenerator } from "../../../loadtest/tools/turnoload.ts";
import { freePort, waitFor } from "../../../harness/ports.ts";

test("a server killed mid-run: the run ends after schedule + 2 x timeout, every request answered or an error", async () => {
  const port = await freePort();
  const server = Bun.spawn([process.execPath, join(import.meta.dir, "../../../bench/baseline-server.ts")], {
    env: { ...process.env, PORT: String(port) },
    stdout: "ignore",
  });
  const generator = new OpenLoopGenerator();
  try {
    await waitFor("baseline server", async () => (await fetch(`http://127.0.0.1:${port}/turno/x`)).ok);
    setTimeout(() => server.kill("SIGKILL"), 1000);
    const t0 = performance.now();
    const run = await generator.run({
      ...{ target: `http://127.0.0.1:${port}`, rate: 2000, seconds: 3, connections: 16, ids: ["a"], dist: "hot" },
      ...{ hostile: 0, timeoutMs: 500, record: true, workers: 2 },
    });
    const seconds = (performance.now() - t0) / 1000;
    expect(seconds).toBeLessThan(3 + 2 * 0.5 + 2);
    expect(run.answered).toBeGreaterThan(500);
    expect(run.errors).toBeGreaterThan(500);
    expect(run.answered + run.errors).toBe(6000);
  } finally {
    generator.close();
    server.kill("SIGKILL");
    await server.exited;
  }
}, 30_000);
