/** The cluster tool's refusals: without root, bad options, unknown hosts (no namespaces involved). */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { namespaceTargetProblem, STATE_ROOT } from "../../scripts/cluster/netns-guard.ts";
import { requireBinary, requireRoot } from "../../harness/binaries.ts";

const CLI = join(import.meta.dir, "../../scripts/cluster/cli.ts");
const PROBE = join(import.meta.dir, "../../scripts/cluster/probe.ts");
const LOAD_CLIENT = join(import.meta.dir, "../distributed/load-client.ts");

async function run(argv: string[], asNobody = false, script = CLI): Promise<{ code: number; stdout: string; stderr: string }> {
  const prefix = asNobody
    ? [requireBinary("setpriv", "apt-get install util-linux"), "--reuid=65534", "--regid=65534", "--clear-groups"]
    : [];
  const child = Bun.spawn([...prefix, process.execPath, script, ...argv], { stdout: "pipe", stderr: "pipe" });
  const code = await child.exited;
  return { code, stdout: await new Response(child.stdout).text(), stderr: await new Response(child.stderr).text() };
}

const STALE = "clistale";
afterAll(() => rmSync(join(STATE_ROOT, STALE), { recursive: true, force: true }));

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

  test("--help prints the usage and exits 0 (for every command, root or not); no command or an unknown one is a usage error", async () => {
    for (const argv of [["--help"], ["-h"], ["up", "--help"], ["status", "--help"], ["autoscale", "-h"]]) {
      const { code, stdout, stderr } = await run(argv, process.getuid?.() === 0);
      expect({ argv, code, stderr }).toEqual({ argv, code: 0, stderr: "" });
      expect(stdout).toContain("usage: npm run cluster -- <command>");
      expect(stdout).toContain("--lb-mode keepalive|strict");
    }
    for (const argv of [[], ["frobnicate"], ["up", "--bogus"], ["status", "--jsn"]]) {
      const { code, stdout, stderr } = await run(argv);
      expect({ argv, code, stdout }).toEqual({ argv, code: 2, stdout: "" });
      expect(stderr).toMatch(/^cluster: /);
      expect(stderr).toContain("usage: npm run cluster -- <command>");
    }
  });

  test("bad options are refused with a message that names the option", async () => {
    requireRoot("the cluster tool (it checks root before its options)");
    expect((await run(["up", "--name", "Bad_Name"])).stderr).toContain("--name must be");
    expect((await run(["up", "--name", "cliopt", "--store", "sqlite"])).stderr).toContain("--store must be redis");
    expect((await run(["up", "--name", "cliopt", "--subnet", "8.8.8.0/24"])).stderr).toContain("--subnet must be a private /24");
    expect((await run(["up", "--name", "cliopt", "--lb-mode", "loose"])).stderr).toContain(
      "--lb-mode must be keepalive or strict",
    );
    expect((await run(["status", "--name", "nosuch"])).stderr).toContain("no cluster 'nosuch' is up");
    expect((await run(["down", "--name", "nosuch"])).code).toBe(0);
    expect((await run(["autoscale", "--name", "nosuch"])).stderr).toContain("no cluster 'nosuch'");
    expect((await run(["up", "--name", "cliopt", "--apps", "3", "--max-apps", "2"])).stderr).toContain("--max-apps must be");
  });

  test("status of a cluster that is not up: says so and exits 1; --json prints only JSON ({up: false})", async () => {
    requireRoot("the cluster tool");
    const plain = await run(["status", "--name", "nosuch"]);
    expect(plain.code).toBe(1);
    expect(plain.stdout).toBe("");
    const json = await run(["status", "--json", "--name", "nosuch"]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ name: "nosuch", up: false });
  });

  test("a stale state file (namespaces gone) is not shown as a cluster", async () => {
    requireRoot("the cluster tool");
    mkdirSync(join(STATE_ROOT, STALE), { recursive: true });
    writeFileSync(
      join(STATE_ROOT, STALE, "state.json"),
      JSON.stringify({ name: STALE, subnet: "10.201.0.0/24", lbUrl: "http://10.201.0.3:80", hosts: {} }),
    );
    const plain = await run(["status", "--name", STALE]);
    expect(plain.code).toBe(1);
    expect(plain.stdout).toBe("");
    expect(plain.stderr).toContain(`no cluster '${STALE}' is up (its namespaces are gone`);
    const json = await run(["status", "--json", "--name", STALE]);
    expect(json.code).toBe(1);
    expect(JSON.parse(json.stdout)).toMatchObject({ name: STALE, up: false });
    expect((await run(["stop", "app1", "--name", STALE])).stderr).toContain("is up (its namespaces are gone");
  });
});

describe("every cluster and bench:cluster script answers --help", () => {
  const REPO = join(import.meta.dir, "../..");
  for (const script of ["cli", "haproxy-config", "probe", "topology", "autoscaler", "netns-guard"]) {
    test(`scripts/cluster/${script}.ts --help: usage, exit 0; an unknown option: exit 2`, async () => {
      const path = join(REPO, "scripts/cluster", `${script}.ts`);
      const help = await run(["--help"], false, path);
      expect({ code: help.code, stderr: help.stderr }).toEqual({ code: 0, stderr: "" });
      expect(help.stdout).toContain("usage:");
      const bad = await run(["--no-such-option"], false, path);
      expect(bad.code).toBe(2);
      expect(bad.stdout).toBe("");
    });
  }

  test("npm run -s bench:cluster -- --help: usage, exit 0, nothing started", async () => {
    const before = (await Bun.$`ip netns list`.nothrow().quiet()).stdout.toString();
    const child = Bun.spawn(["npm", "run", "-s", "bench:cluster", "--", "--help"], { cwd: REPO, stdout: "pipe", stderr: "pipe" });
    expect(await child.exited).toBe(0);
    expect(await new Response(child.stdout).text()).toStartWith("usage: npm run bench:cluster");
    expect((await Bun.$`ip netns list`.nothrow().quiet()).stdout.toString()).toBe(before);
    const bad = Bun.spawn(["npm", "run", "-s", "bench:cluster", "--", "--rounds", "x"], {
      cwd: REPO,
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await bad.exited).toBe(2);
    expect(await new Response(bad.stderr).text()).toContain("--rounds must be a number from 1 to 50");
  });
});

describe("cluster addresses from the root namespace", () => {
  test("the probe and the distributed load client refuse a cluster address outside the namespaces", async () => {
    const probe = await run(["1000", "http://10.200.0.3:80/readyz"], false, PROBE);
    expect(probe.code).toBe(2);
    expect(probe.stderr).toContain("refusing 10.200.0.3");
    // Names a client namespace of a cluster on that subnet (tm-client, or tm-NAME-client if one is up).
    expect(probe.stderr).toMatch(/ip netns exec tm-([a-z0-9]+-)?client curl http:\/\/10\.200\.0\.3:80\/readyz/);
    const options = {
      url: "http://10.200.0.3:80",
      ids: ["x"],
      clients: 1,
      requests: 1,
      durationMs: 1000,
      timeoutMs: 1000,
      out: "/dev/null",
    };
    const load = await run([JSON.stringify(options)], false, LOAD_CLIENT);
    expect(load.code).toBe(2);
    expect(load.stderr).toContain("refusing 10.200.0.3");
  });

  test("only addresses of a cluster subnet are refused, and not inside a namespace of ours", async () => {
    expect(namespaceTargetProblem("http://10.200.0.9:7017")).toContain("refusing 10.200.0.9");
    for (const url of ["http://127.0.0.1:7017", "http://10.99.0.1:80", "http://192.0.2.10", "http://localhost:1", "not a url"]) {
      expect({ url, problem: namespaceTargetProblem(url) }).toEqual({ url, problem: undefined });
    }
    // Inside a namespace of ours it is not refused: test/distributed/cluster-cli.test.ts.
  });

  test("loopback and other addresses are not refused; --help answers", async () => {
    // Nothing listens on port 1: the probe runs (and fails as not ready, exit 1), it is not refused.
    const probe = await run(["300", "http://127.0.0.1:1/readyz"], false, PROBE);
    expect(probe.code).toBe(1);
    expect(probe.stderr).toContain("not ready");
    const help = await run(["--help"], false, PROBE);
    expect({ code: help.code, stderr: help.stderr }).toEqual({ code: 0, stderr: "" });
    expect(help.stdout).toContain("usage:");
    expect((await run(["--frob"], false, PROBE)).code).toBe(2);
  });
});
