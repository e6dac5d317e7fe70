/**
 * `npm run cluster` as an operator runs it: `up` gives every app host the admin token and says where
 * it is, prints only commands that work from the root namespace (ip netns exec ...), `status --json`
 * through npm -s is JSON, `down` leaves no stale status, and Ctrl-C during `up` removes what it built.
 */
import { afterAll, expect, test } from "bun:test";
import { readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { down, listNamespaces, namespacePids, spawnIn, STATE_ROOT } from "../../scripts/cluster/topology.ts";
import { requireClusterPrerequisites } from "./cluster-harness.ts";

const REPO = join(import.meta.dir, "../..");
const CLI = join(REPO, "scripts/cluster/cli.ts");
const NAME = "dcli";
afterAll(() => {
  if (process.getuid?.() === 0) for (const name of [NAME, `${NAME}2`, `${NAME}3`]) down(name);
});

async function cli(argv: string[], env: Record<string, string | undefined> = {}) {
  const child = Bun.spawn([process.execPath, CLI, ...argv], { stdout: "pipe", stderr: "pipe", env: { ...process.env, ...env } });
  const code = await child.exited;
  return { code, stdout: await new Response(child.stdout).text(), stderr: await new Response(child.stderr).text() };
}

function environOf(pid: number): Record<string, string> {
  const env: Record<string, string> = {};
  for (const entry of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
    const eq = entry.indexOf("=");
    if (eq > 0) env[entry.slice(0, eq)] = entry.slice(eq + 1);
  }
  return env;
}

/** An HTTP status seen from inside the cluster's client namespace (curl there). */
async function statusFromClient(state: Parameters<typeof spawnIn>[0], args: string[]): Promise<string> {
  const child = spawnIn(state, "client", ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", ...args], { stdout: "pipe" });
  await child.exited;
  return await new Response(child.stdout as ReadableStream<Uint8Array>).text();
}

test("up: every app host gets the admin token; the output names its file and only namespaced commands", async () => {
  requireClusterPrerequisites();
  down(NAME);
  const upped = await cli(["up", "--name", NAME, "--apps", "2"], { TURNOMATIC_ADMIN_TOKEN: undefined });
  expect(upped.code, upped.stderr).toBe(0);
  console.log(upped.stdout);
  const state = JSON.parse(readFileSync(join(STATE_ROOT, NAME, "state.json"), "utf8"));
  const tokenFile = join(STATE_ROOT, NAME, "admin-token");
  expect(state.adminTokenFile).toBe(tokenFile);
  expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
  const token = readFileSync(tokenFile, "utf8").trim();
  expect(token.length).toBeGreaterThanOrEqual(16);
  expect(upped.stdout).toContain(`Admin token: ${tokenFile}`);
  expect(upped.stdout).toContain("lb-mode keepalive");
  // Every line that shows a cluster address is a command run inside the client namespace.
  const withAddress = upped.stdout.split("\n").filter((line) => /https?:\/\/10\./.test(line));
  expect(withAddress.length).toBeGreaterThanOrEqual(3);
  for (const line of withAddress) expect(line.trim()).toStartWith(`ip netns exec tm-${NAME}-client curl`);
  for (const app of ["app1", "app2"]) {
    const pids = namespacePids(`tm-${NAME}-${app}`);
    expect(pids.length).toBeGreaterThan(0);
    for (const pid of pids) expect(environOf(pid).TURNOMATIC_ADMIN_TOKEN).toBe(token);
  }
  // Through the LB: the admin API is on (401 with a wrong token, past auth with the right one).
  const url = `${state.lbUrl}/admin/turno/cli`;
  expect(await statusFromClient(state, ["-X", "PUT", "-H", "Authorization: Bearer wrong-token-0123456789", url])).toBe("401");
  const withToken = await statusFromClient(state, [
    "-X",
    "PUT",
    "-H",
    `Authorization: Bearer ${token}`,
    "-H",
    "content-type: application/json",
    "-d",
    '{"turno":7}',
    url,
  ]);
  expect(["200", "204"]).toContain(withToken);

  // status: any URL it prints is inside a namespaced command.
  const plain = await cli(["status", "--name", NAME]);
  expect(plain.code).toBe(0);
  for (const line of plain.stdout.split("\n").filter((l) => /https?:\/\/10\./.test(l))) {
    expect(line).toContain(`ip netns exec tm-${NAME}-client curl http://10.`);
  }
  // status --json through npm -s is one JSON document.
  const npm = Bun.spawn(["npm", "run", "-s", "cluster", "--", "status", "--json", "--name", NAME], { cwd: REPO, stdout: "pipe" });
  expect(await npm.exited).toBe(0);
  const report = JSON.parse(await new Response(npm.stdout).text());
  expect(report).toMatchObject({ name: NAME, up: true, lbMode: "keepalive", adminTokenFile: tokenFile });

  expect((await cli(["down", "--name", NAME])).code).toBe(0);
  const after = await cli(["status", "--name", NAME]);
  expect(after.code).toBe(1);
  expect(after.stdout).toBe("");
  expect(after.stderr).toContain(`no cluster '${NAME}' is up`);
}, 120_000);

test("up with TURNOMATIC_ADMIN_TOKEN set passes that token to every app host; --lb-mode strict renders httpclose", async () => {
  requireClusterPrerequisites();
  const name = `${NAME}2`;
  down(name);
  const given = "operator-chosen-token-0123456789";
  const upped = await cli(["up", "--name", name, "--apps", "2", "--lb-mode", "strict"], { TURNOMATIC_ADMIN_TOKEN: given });
  expect(upped.code, upped.stderr).toBe(0);
  expect(upped.stdout).toContain("taken from your TURNOMATIC_ADMIN_TOKEN");
  expect(readFileSync(join(STATE_ROOT, name, "haproxy.cfg"), "utf8")).toMatch(/^\s*option httpclose$/m);
  for (const app of ["app1", "app2"]) {
    for (const pid of namespacePids(`tm-${name}-${app}`)) expect(environOf(pid).TURNOMATIC_ADMIN_TOKEN).toBe(given);
  }
  expect((await cli(["down", "--name", name])).code).toBe(0);
}, 120_000);

test("Ctrl-C during up removes every namespace it created", async () => {
  requireClusterPrerequisites();
  const name = `${NAME}3`;
  down(name);
  const child = Bun.spawn([process.execPath, CLI, "up", "--name", name, "--apps", "2"], { stdout: "pipe", stderr: "pipe" });
  const until = performance.now() + 20_000;
  while (listNamespaces(name).length < 3 && performance.now() < until) await Bun.sleep(5);
  expect(listNamespaces(name).length).toBeGreaterThanOrEqual(3);
  child.kill("SIGINT");
  const code = await child.exited;
  const stderr = await new Response(child.stderr).text();
  // 130 when the signal came while up was still building; 0 if it had just finished (then down it).
  if (code === 0) down(name);
  else {
    expect(code).toBe(130);
    expect(stderr).toContain("interrupted");
  }
  expect(listNamespaces(name)).toEqual([]);
}, 60_000);

test("inside one of our namespaces a cluster address is not refused (the guard only acts outside)", () => {
  requireClusterPrerequisites();
  const ns = `tm-guard${process.pid % 10000}`;
  expect(Bun.spawnSync(["ip", "netns", "add", ns]).exitCode).toBe(0);
  try {
    const guard = join(REPO, "scripts/cluster/netns-guard.ts");
    const code = `const { namespaceTargetProblem } = await import(${JSON.stringify(guard)}); process.stdout.write(String(namespaceTargetProblem("http://10.200.0.9:7017")))`;
    const inside = Bun.spawnSync(["ip", "netns", "exec", ns, process.execPath, "-e", code], { stdout: "pipe" });
    expect(inside.stdout.toString()).toBe("undefined");
    const outside = Bun.spawnSync([process.execPath, "-e", code], { stdout: "pipe" });
    expect(outside.stdout.toString()).toContain("refusing 10.200.0.9");
  } finally {
    Bun.spawnSync(["ip", "netns", "del", ns]);
  }
});
