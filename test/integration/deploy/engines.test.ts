/**
 * `npm install` prints EBADENGINE for every installed package whose `engines.node` the running Node
 * does not satisfy. package.json's "engines" promises a range; this checks, offline from
 * package-lock.json (which records each package's engines), that the lowest Node of that range
 * satisfies every package, so no Node the project accepts gets a warning (it said >=20 while
 * kubernetes-models 5 needed >=22 and some packages need 20.19), and that this machine's Node is in the range.
 */
import { expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../../..");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { engines: { node: string } };
const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as {
  packages: Record<string, { engines?: Record<string, string> | string[]; dev?: boolean }>;
};

/** The lowest version a simple ">=X.Y.Z" range admits. */
function lowest(range: string): string {
  const match = /^>=\s*(\d+\.\d+\.\d+)$/.exec(range.trim());
  if (match === null) throw new Error(`engines.node should be a plain ">=X.Y.Z", is "${range}"`);
  return match[1] as string;
}

test("the lowest Node that package.json's engines admits satisfies every installed package's engines", () => {
  const floor = lowest(pkg.engines.node);
  const unsatisfied: string[] = [];
  for (const [path, entry] of Object.entries(lock.packages)) {
    const engines = entry.engines;
    if (path === "" || engines === undefined || Array.isArray(engines) || engines.node === undefined) continue;
    if (!Bun.semver.satisfies(floor, engines.node))
      unsatisfied.push(`${path.replace(/^node_modules\//, "")} needs node ${engines.node}`);
  }
  expect(unsatisfied).toEqual([]);
});

test("the machine's Node is in the range (npm runs on it)", () => {
  const node = Bun.spawnSync(["node", "--version"], { stdout: "pipe" });
  if (node.exitCode !== 0) {
    console.warn("node is not on PATH; only the lockfile check ran");
    return;
  }
  const version = node.stdout.toString().trim().replace(/^v/, "");
  expect({ version, ok: Bun.semver.satisfies(version, pkg.engines.node) }).toEqual({ version, ok: true });
});
