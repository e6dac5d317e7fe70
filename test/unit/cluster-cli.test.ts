/** The cluster tool's refusals: without root, bad options, unknown hosts (no namespaces involved). */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { requireBinary, requireRoot } from "../helpers/binaries.ts";

const CLI = join(import.meta.dir, "../../scripts/cluster/cli.ts");

async function run(argv: string[], asNobody = false): Promise<{ code: number; stderr: string }> {
  const prefix = asNobody
    ? [requireBinary("setpriv", "apt-get install util-linux"), "--reuid=65534", "--regid=65534", "--clear-groups"]
    : [];
  const child = Bun.spawn([...prefix, process.execPath, CLI, ...argv], { stdout: "pipe", stderr: "pipe" });
  const code = await child.exited;
  return { code, stderr: await new Response(child.stderr).text() };
}

describe("npm run cluster", () => {
  test("without root it says it needs root and exits non-zero", async () => {
    if (process.getuid?.() !== 0) {
      const { code, stderr } = await run(["up", "--name", "noroot"]);
      expect(code).toBe(1);
      expect(stderr).toContain("needs root");
      return;
    }
    const { code, stderr } = await run(["up", "--name", "noroot"], true);
    expect(code).toBe(1);
    expect(stderr).toContain("needs root");
    const scaler = await run(["autoscale", "--name", "noroot"], true);
    expect(scaler.code).toBe(1);
    expect(scaler.stderr).toContain("needs root");
  });

  test("bad options are refused with a message that names the option", async () => {
    requireRoot("the cluster tool (it checks root before its options)");
    expect((await run(["up", "--name", "Bad_Name"])).stderr).toContain("--name must be");
    expect((await run(["up", "--name", "cliopt", "--store", "sqlite"])).stderr).toContain("--store must be redis");
    expect((await run(["up", "--name", "cliopt", "--subnet", "8.8.8.0/24"])).stderr).toContain("--subnet must be a private /24");
    expect((await run(["status", "--name", "nosuch"])).stderr).toContain("no cluster 'nosuch'");
    expect((await run(["down", "--name", "nosuch"])).code).toBe(0);
    expect((await run(["autoscale", "--name", "nosuch"])).stderr).toContain("no cluster 'nosuch'");
    expect((await run(["up", "--name", "cliopt", "--apps", "3", "--max-apps", "2"])).stderr).toContain("--max-apps must be");
  });
});
