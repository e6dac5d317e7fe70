/**
 * The one way every command (bench, loadtest, scripts/cluster) reads its arguments: node:util
 * parseArgs (strict; positionals only where a command takes them), `--help` printing the usage and
 * exiting 0 before anything runs, and a usage error (unknown option, bad value) printing the message
 * and the usage and exiting 2.
 */
import { type ParseArgsOptionsConfig, parseArgs } from "node:util";

export class UsageError extends Error {
  override readonly name = "UsageError";
}

export interface CommandSpec<O extends ParseArgsOptionsConfig> {
  /** Name in messages, e.g. "loadtest:max". */
  readonly name: string;
  /** The text `--help` prints; starts with `usage:`. */
  readonly usage: string;
  readonly options: O;
}

const HELP = { help: { type: "boolean", short: "h" } } as const;

type Values<O extends ParseArgsOptionsConfig> = ReturnType<
  typeof parseArgs<{ options: O & typeof HELP; strict: true }>
>["values"];

/** Parses argv strictly; `--help` is { help: true }. Throws UsageError (with the reason) on bad usage. */
export function parseCommand<O extends ParseArgsOptionsConfig>(spec: CommandSpec<O>, argv: readonly string[]): Values<O> {
  const { values, positionals } = parseCommandLine(spec, argv);
  if (positionals.length > 0)
    throw new UsageError(`Unexpected argument '${positionals[0]}'. This command does not take positional arguments`);
  return values;
}

/** As parseCommand, for commands that also take positional arguments (a subcommand, hosts, URLs). */
export function parseCommandLine<O extends ParseArgsOptionsConfig>(
  spec: CommandSpec<O>,
  argv: readonly string[],
): { values: Values<O>; positionals: string[] } {
  try {
    const { values, positionals } = parseArgs({
      args: [...argv],
      options: { ...spec.options, ...HELP },
      strict: true,
      allowPositionals: true,
      allowNegative: true,
    } as { options: O & typeof HELP; strict: true; allowPositionals: true });
    return { values: values as Values<O>, positionals };
  } catch (error) {
    if (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"))
      throw new UsageError(error.message);
    throw error;
  }
}

/** A number option in [min, max]; `fallback` when absent. */
export function numberArg(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (value.trim() === "" || !Number.isFinite(parsed) || parsed < min || parsed > max)
    throw new UsageError(`--${name} must be a number from ${min} to ${max}; got '${value}'`);
  return parsed;
}

/** An integer option in [min, max]. */
export function integerArg(value: string | undefined, name: string, fallback: number, min: number, max: number): number {
  const parsed = numberArg(value, name, fallback, min, max);
  if (!Number.isInteger(parsed)) throw new UsageError(`--${name} must be a whole number; got '${value}'`);
  return parsed;
}

/** One of the allowed words; `fallback` when absent (required when fallback is undefined). */
export function choiceArg<T extends string>(value: string | undefined, name: string, allowed: readonly T[], fallback?: T): T {
  const chosen = value ?? fallback;
  if (chosen === undefined) throw new UsageError(`--${name} is required: one of ${allowed.join(", ")}`);
  if (!(allowed as readonly string[]).includes(chosen))
    throw new UsageError(`--${name} must be one of ${allowed.join(", ")}; got '${chosen}'`);
  return chosen as T;
}

/** A comma-separated list option (empty entries dropped). */
export const listArg = (value: string | undefined): string[] => (value ?? "").split(",").filter((s) => s.trim() !== "");

/**
 * Runs a command's main: parses the arguments, answers --help (exit 0, nothing else done), turns
 * a UsageError into its message + usage on stderr and exit 2, any other error into exit 3.
 */
export async function runCommand<O extends ParseArgsOptionsConfig>(
  spec: CommandSpec<O>,
  main: (values: Values<O>) => Promise<number>,
  argv: readonly string[] = process.argv.slice(2),
): Promise<never> {
  let code: number;
  try {
    const values = parseCommand(spec, argv);
    if ((values as { help?: boolean }).help === true) {
      process.stdout.write(`${spec.usage}\n`);
      process.exit(0);
    }
    code = await main(values);
  } catch (error) {
    if (error instanceof UsageError) {
      process.stderr.write(`${spec.name}: ${error.message}\n${spec.usage}\n`);
      process.exit(2);
    }
    process.stderr.write(`${spec.name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(3);
  }
  process.exit(code);
}

/**
 * For scripts written as top-level code: parses argv and converts the values (the converter may
 * throw UsageError); --help and bad usage are answered and exit (0 / 2) before anything runs.
 */
export function parseOrExit<O extends ParseArgsOptionsConfig, T>(
  spec: CommandSpec<O>,
  convert: (values: Values<O>) => T,
  argv: readonly string[] = process.argv.slice(2),
): T {
  try {
    const values = parseCommand(spec, argv);
    if ((values as { help?: boolean }).help === true) {
      process.stdout.write(`${spec.usage}\n`);
      process.exit(0);
    }
    return convert(values);
  } catch (error) {
    if (!(error instanceof UsageError)) throw error;
    process.stderr.write(`${spec.name}: ${error.message}\n${spec.usage}\n`);
    process.exit(2);
  }
}
