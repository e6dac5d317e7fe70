import type { LoadOptions } from "../options.ts";
import type { LoadResult } from "../result.ts";

/** What a tool adapter hands back (the measured part of a LoadResult); cli.ts adds the settings and the machine and writes the JSON. */
export type ToolOutcome = Pick<
  LoadResult,
  "requests" | "seconds" | "latencyMs" | "errors" | "non2xx" | "statusCounts" | "verification" | "notes" | "extra"
> & {
  /** The external command line, for tools that are programs. */
  readonly command?: string;
};

export type ToolRunner = (options: LoadOptions) => Promise<ToolOutcome>;

/** Runs a program, echoing its stderr, and returns its stdout; throws with the output on failure. */
export async function runProgram(argv: readonly string[], what: string): Promise<string> {
  const child = Bun.spawn([...argv], { stdout: "pipe", stderr: "pipe" });
  const [stdout, stderr] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
  const code = await child.exited;
  if (stderr.trim() !== "") process.stderr.write(stderr);
  if (code !== 0) throw new Error(`${what} exited with ${code}: ${argv.join(" ")}\n${stdout.slice(-2000)}${stderr.slice(-2000)}`);
  return stdout;
}

export function countStatus(counts: Record<string, number>, status: number | string, by = 1): void {
  const key = String(status);
  counts[key] = (counts[key] ?? 0) + by;
}

export function non2xxOf(counts: Readonly<Record<string, number>>): number {
  let n = 0;
  for (const [status, count] of Object.entries(counts)) if (!status.startsWith("2")) n += count;
  return n;
}
