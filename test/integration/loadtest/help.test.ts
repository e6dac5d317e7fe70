/**
 * Every bench* and loadtest* npm script answers --help with its usage and exit 0 and does nothing
 * else (no package install, no load, no file written: the git tree is unchanged); an unknown
 * option prints the usage and exits 2. bench:cluster (bench/cluster-bench.ts) is left out: it is
 * being rewritten elsewhere and still runs scripts/ensure-test-deps.sh first.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../../..");
const scripts = (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> }).scripts;
const NAMES = Object.keys(scripts).filter((name) => /^(bench|loadtest)(:|$)/.test(name) && name !== "bench:cluster");

/** Also the bench scripts that have no npm script of their own. */
const DIRECT = ["bench/cpu-per-request.ts", "bench/optimizations.ts", "bench/profile.ts"];

function treeState(): string {
  const status = Bun.spawnSync(["git", "status", "--porcelain", "--untracked-files=all"], { cwd: ROOT });
  return status.stdout.toString();
}

function run(argv: string[]): { code: number; stdout: string; stderr: string } {
  const child = Bun.spawnSync(argv, { cwd: ROOT, env: { ...process.env, npm_config_loglevel: "silent" }, timeout: 60_000 });
  return { code: child.exitCode ?? -1, stdout: child.stdout.toString(), stderr: child.stderr.toString() };
}

const npm = (name: string, ...args: string[]) => ["npm", "run", "--silent", name, "--", ...args];
const direct = (file: string, ...args: string[]) => [process.execPath, join(ROOT, file), ...args];

describe("--help answers and does nothing else", () => {
  test("the bench and loadtest scripts are all covered", () => {
    expect(NAMES).toEqual(
      expect.arrayContaining([
        "bench",
        "bench:observability",
        "loadtest",
        "loadtest:max",
        "loadtest:report",
        "loadtest:full",
        "loadtest:steps",
      ]),
    );
  });
  for (const [what, argv] of [
    ...NAMES.map((name) => [`npm run ${name}`, (...a: string[]) => npm(name, ...a)] as const),
    ...DIRECT.map((file) => [file, (...a: string[]) => direct(file, ...a)] as const),
  ])
    test(`${what} --help: usage, exit 0, tree unchanged; an unknown option: usage, exit 2`, () => {
      const before = treeState();
      const help = run(argv("--help"));
      expect(help.stderr).toBe("");
      expect(help.code).toBe(0);
      expect(help.stdout).toStartWith("usage:");
      expect(help.stdout).toContain("--help");
      const bad = run(argv("--no-such-option"));
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain("Unknown option '--no-such-option'");
      expect(bad.stderr).toContain("usage:");
      expect(treeState()).toBe(before);
    }, 60_000);
});
