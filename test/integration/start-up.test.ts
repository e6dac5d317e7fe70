/**
 * What an operator sees at start (issue 15): `--version`, the start log line (version, API, metrics
 * and status-page URLs), and a metrics port held by another process refused with exit 2 instead of
 * two processes sharing it (scrapes then alternated between them).
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import packageJson from "../../package.json" with { type: "json" };
import { freePort } from "../../harness/ports.ts";
import { parseLogLines, startService } from "../../harness/service.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

/** Runs main.ts to its exit (it must exit on its own) and returns the code and what it printed. */
async function runToExit(args: readonly string[], env: Record<string, string>) {
  const child = Bun.spawn([process.execPath, MAIN, ...args], {
    env: { ...process.env, HOST: "127.0.0.1", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const [code, stdout, stderr] = await Promise.all([
    child.exited,
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
  ]);
  clearTimeout(killer);
  return { code, stdout, stderr };
}

describe("--version", () => {
  for (const flag of ["--version", "-v"]) {
    test(`${flag} prints package.json's version and exits 0`, async () => {
      const { code, stdout } = await runToExit([flag], {});
      expect(code).toBe(0);
      expect(stdout).toBe(`turnomatic ${packageJson.version}\n`);
    });
  }

  test("--help lists --version", async () => {
    const { code, stdout } = await runToExit(["--help"], {});
    expect(code).toBe(0);
    expect(stdout).toContain("--version");
  });
});

describe("start log line", () => {
  test("names the version, the API URL, the metrics URL and the status page URL", async () => {
    const service = await startService({ store: "memory:" });
    try {
      const start = parseLogLines(service.logs()).find((line) => line.event === "start");
      expect(start).toMatchObject({
        version: packageJson.version,
        url: service.url,
        metricsUrl: `http://127.0.0.1:${service.metricsPort}/metrics`,
        statusPageUrl: `http://127.0.0.1:${service.metricsPort}/`,
      });
      expect(start?.msg).toBe(`turnomatic ${packageJson.version} listening`);
      // The URLs it names answer.
      expect((await fetch(start?.metricsUrl as string)).status).toBe(200);
      expect((await fetch(start?.statusPageUrl as string)).headers.get("content-type")).toContain("text/html");
    } finally {
      await service.stop("SIGKILL");
    }
  }, 30_000);

  test("with METRICS_PORT=0 it names no metrics URL", async () => {
    const service = await startService({ store: "memory:", env: { METRICS_PORT: "0" } });
    try {
      const start = parseLogLines(service.logs()).find((line) => line.event === "start");
      expect(start?.version).toBe(packageJson.version);
      expect(start?.metricsUrl).toBeUndefined();
      expect(start?.statusPageUrl).toBeUndefined();
    } finally {
      await service.stop("SIGKILL");
    }
  }, 30_000);
});

describe("a metrics port already in use", () => {
  test("a second single process on the same METRICS_PORT exits 2 naming the option; the first keeps the port", async () => {
    const first = await startService({ store: "memory:" });
    try {
      const second = await runToExit([], {
        PORT: String(await freePort()),
        METRICS_PORT: String(first.metricsPort),
        TURNOMATIC_STORE: "memory:",
      });
      expect(second.code).toBe(2);
      expect(second.stderr).toContain("METRICS_PORT / --metrics-port");
      expect(second.stderr).toContain(String(first.metricsPort));
      expect(second.stderr).not.toContain('"event":"start"');
      // Every scrape reaches the first process (before the fix they alternated between the two).
      const pids = new Set<string>();
      for (let i = 0; i < 10; i++) {
        const body = await (await fetch(`http://127.0.0.1:${first.metricsPort}/metrics`)).text();
        pids.add(/^process_start_time_seconds (\S+)$/m.exec(body)?.[1] ?? "none");
      }
      expect([...pids]).not.toContain("none");
      expect(pids.size).toBe(1);
    } finally {
      await first.stop("SIGKILL");
    }
  }, 60_000);

  test("a supervisor with workers still serves one host-wide metrics port; a second supervisor on it exits 2 and spawns no worker", async () => {
    const dir = mkdtempSync(join(tmpdir(), "turnomatic-start-up-"));
    const first = await startService({ store: `sqlite:${join(dir, "a.db")}`, args: ["--workers", "2"] });
    try {
      const second = await runToExit(["--workers", "2"], {
        PORT: String(await freePort()),
        METRICS_PORT: String(first.metricsPort),
        TURNOMATIC_STORE: `sqlite:${join(dir, "b.db")}`,
      });
      expect(second.code).toBe(2);
      expect(second.stderr).toContain("METRICS_PORT / --metrics-port");
      expect(second.stderr).not.toContain('"event":"worker.start"');
      const metrics = await fetch(`http://127.0.0.1:${first.metricsPort}/metrics`);
      expect(metrics.status).toBe(200);
      const supervisorStart = parseLogLines(first.logs()).find((line) => line.event === "supervisor.start");
      expect(supervisorStart).toMatchObject({
        version: packageJson.version,
        metricsUrl: `http://127.0.0.1:${first.metricsPort}/metrics`,
      });
      expect(await first.stop("SIGTERM")).toBe(0);
    } finally {
      await first.stop("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
