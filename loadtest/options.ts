/**
 * The one command-line interface shared by every load tool: parsing, validation and the target
 * rule. Targets are restricted to loopback unless `--netns NAME` says which network namespace of
 * ours reaches them: a load generator pointed at someone else's address is an attack, not a test.
 */
import { choiceArg, integerArg, numberArg, parseCommand, UsageError } from "../bench/toolkit/cli.ts";

export const TOOLS = ["wrk", "hey", "ab", "autocannon", "turnoload", "httperf", "turnomatic-client"] as const;
export type ToolName = (typeof TOOLS)[number];
export const DISTRIBUTIONS = ["hot", "uniform", "zipf"] as const;
export type Distribution = (typeof DISTRIBUTIONS)[number];

export interface LoadOptions {
  readonly tool: ToolName;
  /** Base URL of the service or load balancer, e.g. http://127.0.0.1:7017. */
  readonly target: string;
  /** Seconds of load (default 10). */
  readonly duration: number;
  /** Connections (closed-loop tools) or the in-flight cap (turnoload); default 32. */
  readonly connections: number;
  /** How many distinct ids the requests spread over (default 100). */
  readonly ids: number;
  /** How requests pick ids (default uniform): hot = 90% on one id, zipf = s 1.1. */
  readonly dist: Distribution;
  /** Offered requests/s (turnoload, httperf: open-loop rate, default 1000; hey, autocannon: a cap). */
  readonly rate: number | undefined;
  /** turnoload's worker threads (default: one per 40k req/s, at most the cores). */
  readonly workers: number | undefined;
  /** Check every response and the counters (I1-I4) after the run; exit non-zero on a violation (default on). */
  readonly verify: boolean;
  /** Run the tool inside this network namespace (`ip netns exec`), for the multi-host topology. */
  readonly netns: string | undefined;
  /** Prefix of the ids (default a fresh one per run, so the counters start at 0). */
  readonly idPrefix: string;
  /** Free text stored in the result (e.g. the store under test). */
  readonly label: string;
  /** Directory of the result JSON (default loadtest/results). */
  readonly out: string;
  /** Fraction of hostile requests mixed in (turnoload only; default 0). */
  readonly hostile: number;
  /** Per-request timeout in ms (default 5000). */
  readonly timeoutMs: number;
}

export { UsageError } from "../bench/toolkit/cli.ts";

export const USAGE = `usage: npm run loadtest -- --tool <${TOOLS.join("|")}> --target URL [options]
  --duration S        seconds of load (default 10)
  --connections C     connections / in-flight cap (default 32); turnomatic-client: concurrent callers
  --ids N             distinct ids (default 100)
  --dist D            ${DISTRIBUTIONS.join("|")} (default uniform)
  --rate R            offered requests/s (turnoload, httperf: open-loop rate, default 1000; hey/autocannon: cap)
  --workers W         turnoload: worker threads (default one per 40k req/s, at most the cores)
  --no-verify         skip checking the responses and the counters (on by default: exit 1 on a violation)
  --netns NAME        run inside network namespace NAME (needed for non-loopback targets)
  --id-prefix P       id prefix (default a fresh one per run)
  --label TEXT        stored in the result (e.g. store=sqlite)
  --hostile F         turnoload: fraction (0-0.5) of hostile requests mixed in (default 0)
  --timeout-ms MS     per-request timeout (default 5000); turnomatic-client: per attempt
Tool turnomatic-client is the exactly-once mode: callers use @turnomatic/client (POST with an
Idempotency-Key, retried with the same key); the verifier judges its logical calls.
  --out DIR           result directory (default loadtest/results)
  --help              this text
The last line printed is the path of the result JSON. Exit 0 ok, 1 a verification failed, 2 bad usage, 3 the tool failed.`;

/** The options every load command shares, for node:util parseArgs. */
export const LOAD_ARGS = {
  tool: { type: "string" },
  target: { type: "string" },
  duration: { type: "string" },
  connections: { type: "string" },
  ids: { type: "string" },
  dist: { type: "string" },
  rate: { type: "string" },
  workers: { type: "string" },
  verify: { type: "boolean" },
  netns: { type: "string" },
  "id-prefix": { type: "string" },
  label: { type: "string" },
  out: { type: "string" },
  hostile: { type: "string" },
  "timeout-ms": { type: "string" },
} as const;

export type LoadArgs = {
  readonly [K in keyof typeof LOAD_ARGS]?: (typeof LOAD_ARGS)[K]["type"] extends "boolean" ? boolean : string;
};

/** Defaults a command may change (loadtest:max: one hot id, more connections). */
export interface LoadDefaults {
  readonly tool?: ToolName;
  readonly duration?: number;
  readonly connections?: number;
  readonly ids?: number;
  readonly dist?: Distribution;
}

/** Parses and validates the CLI arguments; throws UsageError with a message that says what to change. */
export function parseLoadOptions(argv: readonly string[]): LoadOptions {
  return loadOptionsFrom(parseCommand({ name: "loadtest", usage: USAGE, options: LOAD_ARGS }, argv));
}

/** Validates parsed arguments (see LOAD_ARGS) into LoadOptions. */
export function loadOptionsFrom(raw: LoadArgs, defaults: LoadDefaults = {}): LoadOptions {
  const tool = choiceArg(raw.tool, "tool", TOOLS, defaults.tool);
  const target = raw.target;
  if (target === undefined) throw new UsageError("--target URL is required, e.g. --target http://127.0.0.1:7017");
  const netns = raw.netns;
  if (netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(netns))
    throw new UsageError(`--netns must be a namespace name (letters, digits, _ . -); got '${netns}'`);
  const options: LoadOptions = {
    tool,
    target: checkTarget(target, netns),
    duration: numberArg(raw.duration, "duration", defaults.duration ?? 10, 1, 3600),
    connections: integerArg(raw.connections, "connections", defaults.connections ?? 32, 1, 10_000),
    ids: integerArg(raw.ids, "ids", defaults.ids ?? 100, 1, 100_000),
    dist: choiceArg(raw.dist, "dist", DISTRIBUTIONS, defaults.dist ?? "uniform"),
    rate: raw.rate === undefined ? undefined : numberArg(raw.rate, "rate", 0, 1, 10_000_000),
    workers: raw.workers === undefined ? undefined : integerArg(raw.workers, "workers", 1, 1, 64),
    verify: raw.verify ?? true,
    netns,
    idPrefix: raw["id-prefix"] ?? `lt${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}-`,
    label: raw.label ?? "",
    out: raw.out ?? `${import.meta.dir}/results`,
    hostile: numberArg(raw.hostile, "hostile", 0, 0, 0.5),
    timeoutMs: numberArg(raw["timeout-ms"], "timeout-ms", 5000, 10, 120_000),
  };
  if (!/^[A-Za-z0-9_-]{0,40}$/.test(options.idPrefix))
    throw new UsageError(`--id-prefix may hold only A-Z a-z 0-9 _ - (at most 40); got '${options.idPrefix}'`);
  if (options.hostile > 0 && tool !== "turnoload") throw new UsageError("--hostile works only with --tool turnoload");
  if (options.workers !== undefined && tool !== "turnoload") throw new UsageError("--workers works only with --tool turnoload");
  if (options.rate !== undefined && (tool === "wrk" || tool === "ab" || tool === "turnomatic-client"))
    throw new UsageError(
      `${tool} is closed-loop and has no rate option; drop --rate or use --tool turnoload or httperf (open loop)`,
    );
  if (tool === "hey" || tool === "ab" || tool === "httperf") {
    if ((raw.ids !== undefined && options.ids !== 1) || (raw.dist !== undefined && options.dist !== "hot"))
      throw new UsageError(`${tool} requests one URL only: use --ids 1 --dist hot, or wrk/autocannon/turnoload for many ids`);
    return { ...options, ids: 1, dist: "hot" };
  }
  return options;
}

/** Loopback only, unless a namespace of ours is named (see the module comment). */
export function checkTarget(target: string, netns: string | undefined): string {
  let url: URL;
  try {
    url = new URL(target);
  } catch {
    throw new UsageError(`--target must be a URL like http://127.0.0.1:7017; got '${target}'`);
  }
  if (url.protocol !== "http:")
    throw new UsageError(`--target must be http:// (the tools speak plain HTTP/1.1); got '${url.protocol}'`);
  if (url.pathname !== "/" || url.search !== "")
    throw new UsageError(`--target is the service's base URL without a path, e.g. http://127.0.0.1:7017; got '${target}'`);
  const host = url.hostname;
  const loopback = host === "localhost" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (!loopback && netns === undefined)
    throw new UsageError(
      `refusing target ${host}: only loopback (127.0.0.0/8, localhost, [::1]) is allowed, or an address reached from a network namespace of ours given with --netns NAME`,
    );
  return `${url.protocol}//${url.host}`;
}
