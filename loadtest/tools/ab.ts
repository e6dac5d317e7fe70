/**
 * ApacheBench (closed loop, C concurrent keep-alive connections, HTTP/1.0) on one URL, so one id.
 * `-l` accepts bodies of varying length (the turno grows). Latencies come from its -g file, which
 * has millisecond resolution. --verify checks that the counter moved by exactly the 2xx count.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../../harness/binaries.ts";
import { idName } from "../ids.ts";
import type { LoadOptions } from "../options.ts";
import { percentiles, progress } from "../result.ts";
import { readCounters, verifyCounterDelta } from "../verify.ts";
import { runProgram, type ToolOutcome } from "./tool.ts";

function field(stdout: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+([0-9.]+)`, "m").exec(stdout);
  return match === null ? 0 : Number(match[1]);
}

export async function runAb(options: LoadOptions): Promise<ToolOutcome> {
  const ab = requireBinary("ab", "apt-get install apache2-utils");
  const id = idName(options.idPrefix, 0);
  const before = options.verify ? ((await readCounters(options.target, [id])).get(id) ?? 0) : 0;
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-ab-"));
  try {
    const gnuplot = join(dir, "ab.tsv");
    const argv = [
      ab,
      "-k",
      "-l",
      "-q",
      "-c",
      String(options.connections),
      "-t",
      String(options.duration),
      "-n",
      "50000000",
      "-s",
      String(Math.ceil(options.timeoutMs / 1000)),
      "-g",
      gnuplot,
      `${options.target}/turno/${id}`,
    ];
    progress(`ab: ${options.connections} connections, ${options.duration}s on ${id}`);
    const stdout = await runProgram(argv, "ab");
    const complete = field(stdout, "Complete requests");
    const failed = field(stdout, "Failed requests");
    const non2xx = field(stdout, "Non-2xx responses");
    const seconds = field(stdout, "Time taken for tests");
    const rows = readFileSync(gnuplot, "utf8")
      .split("\n")
      .slice(1)
      .filter((l) => l !== "");
    const latencies = Float64Array.from(rows, (row) => Number(row.split("\t")[4]));
    let verification: ToolOutcome["verification"];
    if (options.verify) {
      const after = (await readCounters(options.target, [id])).get(id) ?? 0;
      verification = verifyCounterDelta(id, complete - non2xx - failed, failed + non2xx, before, after, options.connections);
    }
    return {
      requests: complete,
      seconds,
      latencyMs: percentiles(latencies),
      errors: failed,
      non2xx,
      statusCounts: { "2xx": complete - non2xx - failed, "non-2xx": non2xx },
      verification,
      notes: ["closed loop, one id (ab has one URL), HTTP/1.0 keep-alive", "latency resolution 1 ms (ab's -g file)"],
      command: argv.filter((a) => a !== gnuplot && a !== "-g").join(" "),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
