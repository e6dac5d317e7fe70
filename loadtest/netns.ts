/**
 * The --netns hook for the multi-host topology: a command re-runs itself inside the network
 * namespace (`ip netns exec NAME`), so every tool it starts (turnoload, wrk, httperf...) runs
 * from there. An environment variable marks the re-run, so it does not re-run again.
 */
import { progress } from "./result.ts";

const IN_NETNS = "TURNOMATIC_LOADTEST_NETNS";

/**
 * If `netns` is set and this process is not yet inside it, runs `script` with the same arguments
 * inside the namespace, waits, and returns true (exiting with the child's code); else false.
 */
export async function maybeReExecInNetns(netns: string | undefined, script: string): Promise<boolean> {
  if (netns === undefined || process.env[IN_NETNS] === netns) return false;
  const argv = ["ip", "netns", "exec", netns, process.execPath, script, ...process.argv.slice(2)];
  progress(`running inside network namespace ${netns}: ${argv.join(" ")}`);
  const child = Bun.spawn(argv, { stdout: "inherit", stderr: "inherit", env: { ...process.env, [IN_NETNS]: netns } });
  process.exit(await child.exited);
}
