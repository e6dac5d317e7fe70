/**
 * The --netns hook for the multi-host topology: the whole command re-runs inside a network
 * namespace (`ip netns exec`). Proven with a namespace of our own holding only its loopback and a
 * turn service started inside it, which the host cannot reach: only a run inside the namespace can.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { requireBinary, requireRoot } from "../../../harness/binaries.ts";
import { runCli } from "./run-cli.ts";

const NS = `tmlt${process.pid}`;
const PORT = 17_000 + (process.pid % 1000);
let server: Subprocess | undefined;

async function ip(...args: string[]): Promise<void> {
  const child = Bun.spawn(["ip", ...args], { stdout: "ignore", stderr: "pipe" });
  const stderr = await new Response(child.stderr).text();
  if ((await child.exited) !== 0) throw new Error(`ip ${args.join(" ")} failed: ${stderr}`);
}

beforeAll(async () => {
  requireRoot("network namespaces");
  requireBinary("ip", "apt-get install iproute2");
  await ip("netns", "add", NS);
  await ip("netns", "exec", NS, "ip", "link", "set", "lo", "up");
  const script = join(import.meta.dir, "broken-service-main.ts");
  server = Bun.spawn(["ip", "netns", "exec", NS, process.execPath, script, String(PORT)], { stdout: "pipe", stderr: "inherit" });
  const reader = (server.stdout as ReadableStream<Uint8Array>).getReader();
  const { value } = await reader.read();
  expect(new TextDecoder().decode(value)).toContain("listening");
});

afterAll(async () => {
  server?.kill();
  await server?.exited;
  await ip("netns", "delete", NS).catch(() => undefined);
});

test("a run with --netns reaches a service that only exists inside the namespace", async () => {
  const target = `http://127.0.0.1:${PORT}`;
  const run = await runCli("cli.ts", [
    "--tool",
    "turnoload",
    "--target",
    target,
    "--netns",
    NS,
    "--duration",
    "1",
    "--rate",
    "100",
    "--ids",
    "2",
    "--verify",
  ]);
  expect(run.stderr).toContain(`running inside network namespace ${NS}`);
  expect(run.stderr).toContain("verification (history): OK");
  expect(run.code).toBe(0);
  expect((run.result as { requests: number }).requests).toBe(100);
}, 60_000);
