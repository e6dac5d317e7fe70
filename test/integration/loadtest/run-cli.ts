import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../../..");

export interface CliRun {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  /** The result JSON named by the last stdout line, parsed (undefined if none). */
  readonly result: Record<string, unknown> | undefined;
}

/**
 * Runs a loadtest script (cli.ts, max.ts) as its own process, asynchronously: a service under test
 * may live in this very process and must keep answering. Results go to a temporary directory.
 */
export async function runCli(script: string, args: readonly string[], timeoutMs = 120_000): Promise<CliRun> {
  const out = mkdtempSync(join(tmpdir(), "turnomatic-lt-"));
  try {
    const child = Bun.spawn([process.execPath, join(ROOT, "loadtest", script), ...args, "--out", out], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    const [stdout, stderr] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    const code = await child.exited;
    clearTimeout(timer);
    const last = stdout.trim().split("\n").at(-1) ?? "";
    let result: Record<string, unknown> | undefined;
    if (last.endsWith(".json")) result = JSON.parse(readFileSync(last, "utf8")) as Record<string, unknown>;
    return { code, stdout, stderr, result };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
