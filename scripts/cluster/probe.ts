/**
 * Readiness probe run inside a namespace by the cluster tool (the root namespace cannot reach the
 * topology's subnet): polls every URL until each answers 200, or fails after the timeout.
 */
import { parseCommandLine, UsageError } from "../../bench/toolkit/cli.ts";
import { NamespaceTargetError, refuseNamespaceTarget } from "./netns-guard.ts";

const USAGE = `usage: ip netns exec tm-client npx bun scripts/cluster/probe.ts TIMEOUT_MS URL...
  Polls every URL until each answers 200 (exit 0), or exits 1 after TIMEOUT_MS. Used by the cluster
  tool inside the client namespace; from the root namespace, cluster addresses are refused.`;

function fail(message: string, code: number): never {
  process.stderr.write(`probe: ${message}\n${code === 2 ? `${USAGE}\n` : ""}`);
  process.exit(code);
}

let args: string[] = [];
try {
  const { values, positionals } = parseCommandLine({ name: "probe", usage: USAGE, options: {} }, process.argv.slice(2));
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  args = positionals;
} catch (error) {
  if (error instanceof UsageError) fail(`${error.message}.`, 2);
  throw error;
}
const [timeoutArg, ...urls] = args;
const timeoutMs = Number(timeoutArg);
if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) fail(`TIMEOUT_MS must be a positive integer; got '${timeoutArg}'.`, 2);
if (urls.length === 0) fail("give at least one URL.", 2);
try {
  urls.forEach(refuseNamespaceTarget);
} catch (error) {
  if (error instanceof NamespaceTargetError) fail(error.message, 2);
  throw error;
}
const until = performance.now() + timeoutMs;
const pending = new Set(urls);
let lastError = "";
while (pending.size > 0 && performance.now() < until) {
  for (const url of [...pending]) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      if (response.status === 200) pending.delete(url);
      else lastError = `${url}: ${response.status}`;
    } catch (error) {
      lastError = `${url}: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
  if (pending.size > 0) await Bun.sleep(100);
}
if (pending.size > 0) fail(`not ready: ${[...pending].join(", ")} (last: ${lastError})`, 1);
