/**
 * The one command-line interface shared by every load tool: parsing, validation and the target
 * rule. Targets are restricted to loopback unless `--netns NAME` says which network namespace of
 * ours reaches them: a load generator pointed at someone else's address is an attack, not a test.
 */
export const TOOLS = ["wrk", "hey", "ab", "autocannon", "turnoload"] as const;
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
  /** Offered requests/s (turnoload: required open-loop rate, default 1000; hey, autocannon: a cap). */
  readonly rate: number | undefined;
  /** Check every response and the counters (I1-I4) after the run; exit non-zero on a violation. */
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

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export const USAGE = `usage: npm run loadtest -- --tool <${TOOLS.join("|")}> --target URL [options]
  --duration S        seconds of load (default 10)
  --connections C     connections / in-flight cap (default 32)
  --ids N             distinct ids (default 100)
  --dist D            ${DISTRIBUTIONS.join("|")} (default uniform)
  --rate R            offered requests/s (turnoload: open-loop rate, default 1000; hey/autocannon: cap)
  --verify            verify every response and the counters; exit 1 on a violation
  --netns NAME        run inside network namespace NAME (needed for non-loopback targets)
  --id-prefix P       id prefix (default a fresh one per run)
  --label TEXT        stored in the result (e.g. store=sqlite)
  --hostile F         turnoload: fraction (0-0.5) of hostile requests mixed in (default 0)
  --timeout-ms MS     per-request timeout (default 5000)
  --out DIR           result directory (default loadtest/results)
The last line printed is the path of the result JSON.`;

type Raw = Map<string, string | true>;

function parseRaw(argv: readonly string[]): Raw {
  const raw: Raw = new Map();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (!arg.startsWith("--")) throw new UsageError(`unexpected argument '${arg}'; options look like --name value`);
    const eq = arg.indexOf("=");
    if (eq > 0) {
      raw.set(arg.slice(2, eq), arg.slice(eq + 1));
      continue;
    }
    const next = argv[i + 1];
    if (next === undefined || next.startsWith("--")) raw.set(arg.slice(2), true);
    else {
      raw.set(arg.slice(2), next);
      i++;
    }
  }
  return raw;
}

export function numberOption(raw: Raw, name: string, fallback: number, min: number, max: number): number {
  const value = raw.get(name);
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (value === true || !Number.isFinite(parsed) || parsed < min || parsed > max)
    throw new UsageError(`--${name} must be a number from ${min} to ${max}; got '${value === true ? "" : value}'`);
  return parsed;
}

function textOption(raw: Raw, name: string): string | undefined {
  const value = raw.get(name);
  if (value === true) throw new UsageError(`--${name} needs a value`);
  return value;
}

function oneOf<T extends string>(raw: Raw, name: string, allowed: readonly T[], fallback?: T): T {
  const value = raw.get(name) ?? fallback;
  if (value === undefined) throw new UsageError(`--${name} is required: one of ${allowed.join(", ")}`);
  if (value === true || !(allowed as readonly string[]).includes(value))
    throw new UsageError(`--${name} must be one of ${allowed.join(", ")}; got '${value === true ? "" : value}'`);
  return value as T;
}

const KNOWN = new Set([
  "tool",
  "target",
  "duration",
  "connections",
  "ids",
  "dist",
  "rate",
  "verify",
  "netns",
  "id-prefix",
  "label",
  "out",
  "hostile",
  "timeout-ms",
]);

/** Parses and validates the CLI arguments; throws UsageError with a message that says what to change. */
export function parseLoadOptions(argv: readonly string[], extraKnown: readonly string[] = []): LoadOptions {
  const raw = parseRaw(argv);
  for (const name of raw.keys())
    if (!KNOWN.has(name) && !extraKnown.includes(name)) throw new UsageError(`unknown option --${name}\n${USAGE}`);
  const tool = oneOf(raw, "tool", TOOLS);
  const target = textOption(raw, "target");
  if (target === undefined) throw new UsageError("--target URL is required, e.g. --target http://127.0.0.1:7017");
  const netns = textOption(raw, "netns");
  if (netns !== undefined && !/^[A-Za-z0-9_.-]{1,64}$/.test(netns))
    throw new UsageError(`--netns must be a namespace name (letters, digits, _ . -); got '${netns}'`);
  const rateValue = raw.get("rate");
  const options: LoadOptions = {
    tool,
    target: checkTarget(target, netns),
    duration: numberOption(raw, "duration", 10, 1, 3600),
    connections: Math.floor(numberOption(raw, "connections", 32, 1, 10_000)),
    ids: Math.floor(numberOption(raw, "ids", 100, 1, 100_000)),
    dist: oneOf(raw, "dist", DISTRIBUTIONS, "uniform"),
    rate: rateValue === undefined ? undefined : numberOption(raw, "rate", 0, 1, 10_000_000),
    verify: raw.get("verify") === true || raw.get("verify") === "true",
    netns,
    idPrefix: textOption(raw, "id-prefix") ?? `lt${Date.now().toString(36)}${Math.floor(Math.random() * 1296).toString(36)}-`,
    label: textOption(raw, "label") ?? "",
    out: textOption(raw, "out") ?? `${import.meta.dir}/results`,
    hostile: numberOption(raw, "hostile", 0, 0, 0.5),
    timeoutMs: numberOption(raw, "timeout-ms", 5000, 10, 120_000),
  };
  if (!/^[A-Za-z0-9_-]{0,40}$/.test(options.idPrefix))
    throw new UsageError(`--id-prefix may hold only A-Z a-z 0-9 _ - (at most 40); got '${options.idPrefix}'`);
  if (options.hostile > 0 && tool !== "turnoload") throw new UsageError("--hostile works only with --tool turnoload");
  if (options.rate !== undefined && (tool === "wrk" || tool === "ab"))
    throw new UsageError(`${tool} is closed-loop and has no rate option; drop --rate or use --tool turnoload (open loop)`);
  if (tool === "hey" || tool === "ab") {
    if ((raw.has("ids") && options.ids !== 1) || (raw.has("dist") && options.dist !== "hot"))
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
