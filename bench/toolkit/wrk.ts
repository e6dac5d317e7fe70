/**
 * The one wrk runner of the measurement toolkit (closed loop: C connections over T threads) with
 * turno.lua beside it, which picks an id per request (hot | uniform | zipf), checks every response
 * when asked, and prints one `TURNOMATIC_WRK {json}` summary line (latency percentiles from wrk's
 * own histogram, µs resolution). Benchmarks, the load-test CLI and loadtest:max's probe all use it.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../../harness/binaries.ts";
import type { Percentiles } from "./stats.ts";

export const WRK_SCRIPT = join(import.meta.dir, "turno.lua");

export interface WrkOptions {
  /** Base URL of the service, e.g. http://127.0.0.1:7017. */
  readonly url: string;
  readonly connections: number;
  /** wrk threads (default 1). */
  readonly threads?: number;
  readonly seconds: number;
  /** Per-request timeout in seconds (default 5). */
  readonly timeoutSeconds?: number;
  /** Distinct ids `<prefix>0..ids-1` (default 1). */
  readonly ids?: number;
  readonly dist?: "hot" | "uniform" | "zipf";
  /** Id prefix (default "b"). */
  readonly prefix?: string;
  /** Check every response and record each (id, turno) (read them with `records`). */
  readonly verify?: boolean;
  /** Every request a POST with a fresh Idempotency-Key. */
  readonly keyed?: boolean;
  /** Every request a batch turn of this many numbers (POST /turno/:id?count=k); default 1 = single turns. */
  readonly count?: number;
  /** Command to run wrk under, e.g. ["ip", "netns", "exec", "ns"]. */
  readonly wrapper?: readonly string[];
}

export interface WrkSummary {
  readonly requests: number;
  readonly durationUs: number;
  readonly errors: { readonly connect: number; readonly read: number; readonly write: number; readonly timeout: number };
  /** Responses with status >= 400 (wrk's own count). */
  readonly statusErrors: number;
  /** With verify: responses that were not 200, and 200s with a wrong body or headers (first one quoted). */
  readonly notOk: number;
  readonly badShape: number;
  readonly firstBad: string;
  readonly latencyMs: Percentiles;
}

export interface WrkRun {
  readonly summary: WrkSummary;
  readonly rps: number;
  /** wrk's own CPU seconds (user + system) over the run. */
  readonly wrkCpuSeconds: number;
  /** The command line, for the result file. */
  readonly command: string;
  /** With verify: every (id, turno) seen. */
  readonly records: readonly { readonly id: string; readonly turno: number }[];
}

interface RawSummary {
  requests: number;
  duration_us: number;
  connect: number;
  read: number;
  write: number;
  status: number;
  timeout: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
  bad_shape: number;
  not_ok: number;
  first_bad: string;
}

/** Parses the `TURNOMATIC_WRK` line that turno.lua prints in done(). */
export function parseWrkOutput(stdout: string): WrkSummary {
  const line = stdout.split("\n").find((l) => l.startsWith("TURNOMATIC_WRK "));
  if (line === undefined)
    throw new Error(`wrk printed no TURNOMATIC_WRK line (is ${WRK_SCRIPT} in use?):\n${stdout.slice(-2000)}`);
  const s = JSON.parse(line.slice("TURNOMATIC_WRK ".length)) as RawSummary;
  const ms = (us: number) => Math.round(us) / 1000;
  return {
    requests: s.requests,
    durationUs: s.duration_us,
    errors: { connect: s.connect, read: s.read, write: s.write, timeout: s.timeout },
    statusErrors: s.status,
    notOk: s.not_ok,
    badShape: s.bad_shape,
    firstBad: s.first_bad,
    latencyMs: { p50: ms(s.p50), p90: ms(s.p90), p99: ms(s.p99), p999: ms(s.p999), max: ms(s.max), mean: ms(s.mean) },
  };
}

/** Transport errors of a run: connect, read, write and timeouts. */
export const transportErrors = (s: WrkSummary): number => s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout;

function readRecords(dir: string): { id: string; turno: number }[] {
  const records: { id: string; turno: number }[] = [];
  for (const file of readdirSync(dir)) {
    if (!file.startsWith("thread-")) continue;
    for (const line of readFileSync(join(dir, file), "utf8").split("\n")) {
      if (line === "") continue;
      const [id, turno] = line.split(" ");
      records.push({ id: id as string, turno: Number(turno) });
    }
  }
  return records;
}

/** Runs wrk once and parses its summary; throws with wrk's output when it fails. */
export async function runWrk(options: WrkOptions): Promise<WrkRun> {
  const wrk = requireBinary("wrk", "apt-get install wrk");
  if (options.verify && (options.count ?? 1) > 1)
    throw new Error("runWrk: verify checks single turns only; drop count or verify");
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-wrk-"));
  try {
    const argv = [
      ...(options.wrapper ?? []),
      wrk,
      ...["-t", String(options.threads ?? 1), "-c", String(options.connections), "-d", `${options.seconds}s`],
      ...["--timeout", `${options.timeoutSeconds ?? 5}s`, "-s", WRK_SCRIPT, options.url, "--"],
      ...[String(options.ids ?? 1), options.dist ?? "uniform", options.prefix ?? "b", dir, options.verify ? "1" : "0"],
      options.keyed ? "1" : "0",
      String(options.count ?? 1),
    ];
    const child = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr] = await Promise.all([new Response(child.stdout).text(), new Response(child.stderr).text()]);
    const code = await child.exited;
    if (code !== 0) throw new Error(`wrk exited with ${code}: ${argv.join(" ")}\n${stdout.slice(-2000)}${stderr.slice(-2000)}`);
    const summary = parseWrkOutput(stdout);
    const usage = child.resourceUsage();
    return {
      summary,
      rps: summary.requests / Math.max(1e-6, summary.durationUs / 1e6),
      wrkCpuSeconds: usage === undefined ? Number.NaN : Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6,
      command: argv.slice(0, argv.indexOf("--")).join(" "),
      records: options.verify ? readRecords(dir) : [],
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
