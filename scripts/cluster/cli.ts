/**
 * npm run cluster -- <command> [options]: the local multi-host topology (see docs/scale-out.md).
 *
 *   up [--apps 2] [--max-apps N] [--workers 1] [--store redis] [--subnet 10.200.0.0/24]
 *   status [--json]          each host's role, namespace, address, pids, link and HAProxy state
 *   stop HOST                kill -9 every process of HOST (a crash)
 *   start HOST               start HOST's process again
 *   restart HOST             SIGTERM (graceful drain), wait, start, wait until HAProxy has it UP
 *   link HOST down|up        cut or restore HOST's network link
 *   down                     kill every process, remove every namespace (idempotent)
 *   autoscale [--min 2] [--max 4] [--interval-ms 1000] [--scale-out-cpu 0.6] [--scale-in-cpu 0.2]
 *             [--p99-ms 0] [--cooldown-out-ms 5000] [--cooldown-in-ms 15000] [--duration-s S]
 *                            add/remove app hosts from measured CPU and latency (needs up --max-apps)
 *
 * Every command takes --name NAME (default "default") to run several clusters side by side.
 */
import { parseArgs } from "node:util";
import { autoscale, DEFAULT_POLICY } from "./autoscaler.ts";
import {
  appUrl,
  ClusterError,
  DRAIN_DELAY_MS,
  down,
  loadState,
  requireClusterRoot,
  setLink,
  startHost,
  status,
  stopHost,
  terminateHost,
  up,
  waitLbState,
  waitReady,
} from "./topology.ts";

const USAGE = `usage: npm run cluster -- <up|status|stop|start|restart|link|down|autoscale> [HOST] [options]
  up [--apps 2] [--max-apps APPS] [--workers 1] [--store redis] [--subnet 10.200.0.0/24]
  status [--json] | stop HOST | start HOST | restart HOST | link HOST down|up | down
  autoscale [--min 2] [--max 4] [--interval-ms 1000] [--scale-out-cpu 0.6] [--scale-in-cpu 0.2]
            [--p99-ms 0 (off)] [--cooldown-out-ms 5000] [--cooldown-in-ms 15000] [--duration-s S]
  all commands: --name NAME (default "default")`;

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      name: { type: "string", default: "default" },
      apps: { type: "string", default: "2" },
      "max-apps": { type: "string" },
      min: { type: "string", default: String(DEFAULT_POLICY.min) },
      max: { type: "string", default: String(DEFAULT_POLICY.max) },
      "interval-ms": { type: "string", default: "1000" },
      "scale-out-cpu": { type: "string", default: String(DEFAULT_POLICY.scaleOutCpu) },
      "scale-in-cpu": { type: "string", default: String(DEFAULT_POLICY.scaleInCpu) },
      "p99-ms": { type: "string", default: String(DEFAULT_POLICY.p99Ms) },
      "cooldown-out-ms": { type: "string", default: String(DEFAULT_POLICY.cooldownOutMs) },
      "cooldown-in-ms": { type: "string", default: String(DEFAULT_POLICY.cooldownInMs) },
      "duration-s": { type: "string" },
      workers: { type: "string", default: "1" },
      store: { type: "string", default: "redis" },
      subnet: { type: "string", default: "10.200.0.0/24" },
      json: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const [command, host, arg] = positionals;
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    if (command === undefined && !values.help) process.exit(2);
    return;
  }
  requireClusterRoot();
  const name = values.name;
  const needHost = () => {
    if (host === undefined) throw new ClusterError(`'${command}' needs a HOST (e.g. app1); see 'status'.`);
    return host;
  };
  switch (command) {
    case "up": {
      const state = await up({
        name,
        apps: Number(values.apps),
        workers: Number(values.workers),
        store: values.store,
        subnet: values.subnet,
        ...(values["max-apps"] === undefined ? {} : { maxApps: Number(values["max-apps"]) }),
      });
      process.stdout.write(`cluster '${state.name}' is up: ${state.apps} app hosts x ${state.workers} workers, Redis, HAProxy\n`);
      process.stdout.write(`LB URL: ${state.lbUrl}  (reach it from the client namespace:`);
      process.stdout.write(` ip netns exec ${state.hosts.client?.namespace} curl ${state.lbUrl}/turno/demo)\n`);
      process.stdout.write(`HAProxy metrics: ${state.lbStatsUrl}\n`);
      return;
    }
    case "status": {
      const report = await status(loadState(name));
      if (values.json) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      else {
        process.stdout.write(`cluster ${report.name}  LB ${report.lbUrl}\n`);
        for (const h of report.hosts as Array<Record<string, unknown>>) {
          const pids = (h.pids as number[]).join(",") || "-";
          process.stdout.write(
            `  ${String(h.name).padEnd(8)} ${String(h.role).padEnd(6)} ${String(h.namespace).padEnd(20)} ${String(h.address ?? "").padEnd(14)} link=${h.link ?? "-"} lb=${h.lb ?? "-"} pids=${pids}\n`,
          );
        }
      }
      return;
    }
    case "stop": {
      const pids = stopHost(loadState(name), needHost());
      process.stdout.write(`killed ${pids.length} process(es) of ${host}: ${pids.join(", ")}\n`);
      return;
    }
    case "start": {
      const state = loadState(name);
      startHost(state, needHost());
      if (state.hosts[needHost()]?.role === "app") await waitReady(state, [`${appUrl(state, needHost())}/readyz`]);
      process.stdout.write(`started ${host}\n`);
      return;
    }
    case "restart": {
      const state = loadState(name);
      const target = needHost();
      if (!(await terminateHost(state, target, DRAIN_DELAY_MS + 15_000))) stopHost(state, target);
      startHost(state, target);
      if (state.hosts[target]?.role === "app") {
        await waitReady(state, [`${appUrl(state, target)}/readyz`]);
        await waitLbState(state, [target], "UP");
      }
      process.stdout.write(`restarted ${target}\n`);
      return;
    }
    case "link": {
      if (arg !== "up" && arg !== "down") throw new ClusterError("usage: link HOST down|up");
      setLink(loadState(name), needHost(), arg === "up");
      process.stdout.write(`link of ${host} is ${arg}\n`);
      return;
    }
    case "down": {
      const removed = down(name);
      process.stdout.write(removed.length === 0 ? `cluster '${name}' was not up\n` : `removed ${removed.join(", ")}\n`);
      return;
    }
    case "autoscale": {
      const controller = new AbortController();
      // SIGINT/SIGTERM: finish the action in progress, then stop; the topology stays up.
      process.once("SIGINT", () => controller.abort());
      process.once("SIGTERM", () => controller.abort());
      const policy = {
        ...DEFAULT_POLICY,
        min: Number(values.min),
        max: Number(values.max),
        scaleOutCpu: Number(values["scale-out-cpu"]),
        scaleInCpu: Number(values["scale-in-cpu"]),
        p99Ms: Number(values["p99-ms"]),
        cooldownOutMs: Number(values["cooldown-out-ms"]),
        cooldownInMs: Number(values["cooldown-in-ms"]),
      };
      const intervalMs = Number(values["interval-ms"]);
      if (!(intervalMs >= 50)) throw new ClusterError(`--interval-ms must be >= 50; got ${values["interval-ms"]}.`);
      const durationS = values["duration-s"] === undefined ? undefined : Number(values["duration-s"]);
      if (durationS !== undefined && !(durationS > 0)) throw new ClusterError(`--duration-s must be > 0; got ${durationS}.`);
      try {
        await autoscale(loadState(name), { policy, intervalMs, durationS, signal: controller.signal });
      } catch (error) {
        if (error instanceof RangeError) throw new ClusterError(error.message);
        throw error;
      }
      return;
    }
    default:
      throw new ClusterError(`unknown command '${command}'.\n${USAGE}`);
  }
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof ClusterError || (error instanceof TypeError && "code" in error)) {
    process.stderr.write(`cluster: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}
