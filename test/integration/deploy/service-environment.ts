/**
 * The service's own configuration rules applied to the environments the deployment files set: every
 * variable must be one the service reads (a misspelled TURNOMATIC_DRAIN_DELAY would be ignored
 * silently, and the default of 0 ms would drop requests on every rollout), and together they must
 * pass loadConfig, the same validation the service runs at start.
 */
import { loadConfig, OPTIONS } from "../../../src/config.ts";

/** Read by Bun or by convention, not by src/config.ts. */
const RUNTIME_VARIABLES = new Set(["NODE_ENV", "BUN_RUNTIME_TRANSPILER_CACHE_PATH"]);

/** Problems with an environment given to the service (empty = it starts with it). */
export function checkServiceEnvironment(env: Readonly<Record<string, string>>, where: string): string[] {
  const known = new Set(OPTIONS.map((option) => option.env));
  const problems = Object.keys(env)
    .filter((name) => !known.has(name) && !RUNTIME_VARIABLES.has(name))
    .map((name) => `${where}: ${name} is not an option of the service (see src/config.ts OPTIONS)`);
  try {
    loadConfig([], env);
  } catch (error) {
    problems.push(`${where}: ${(error as Error).message}`);
  }
  return problems;
}
