/**
 * Readiness probe run inside a namespace by the cluster tool (the root namespace cannot reach the
 * topology's subnet): polls every URL until each answers 200, or fails after the timeout.
 *   bun scripts/cluster/probe.ts <timeoutMs> <url>...
 */
const [timeoutArg, ...urls] = process.argv.slice(2);
const until = performance.now() + Number(timeoutArg ?? 20_000);
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
if (pending.size > 0) {
  process.stderr.write(`not ready: ${[...pending].join(", ")} (last: ${lastError})\n`);
  process.exit(1);
}
export {};
