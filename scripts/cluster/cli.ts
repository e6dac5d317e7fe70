/**
 * npm run cluster -- <command> [options]: the local multi-host topology (see docs/guides/scale-out.md).
 * Run it as root (network namespaces); `npm run -s cluster -- status --json` for JSON only (-s keeps
 * npm's own banner off stdout). See USAGE below for every command and option.
 */
import { integerArg, parseCommandLine, UsageError } from "../../bench/toolkit/cli.ts";
import { autoscale, DEFAULT_POLICY } from "./autoscaler.ts";
import { LB_MODES } from "./haproxy-config.ts";
import {
  appUrl,
  CLUSTER_DEFAULTS,
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
  type ClusterState,
  up,
  waitLbState,
  waitReady,
} from "./topology.ts";

const USAGE = `usage: npm run cluster -- <command> [HOST] [options]      (as root: it creates network namespaces)
  up [--apps 2] [--max-apps APPS] [--workers 1] [--store redis] [--subnet 10.200.0.0/24]
     [--lb-mode ${LB_MODES.join("|")}]   keepalive (default): keep-alive on both sides of HAProxy, lost numbers
                                 counted by the store's ledger; strict: option httpclose, every failure
                                 reaches the client, ~2x the CPU per request (docs/guides/scale-out.md)
  status [--json]          each host's role, namespace, address, pids, link and HAProxy state; exit 1
                           when the cluster is not up. JSON only: npm run -s cluster -- status --json
  stop HOST                kill -9 every process of HOST (a crash)
  start HOST               start HOST's process again
  restart HOST             SIGTERM (graceful drain), wait, start, wait until HAProxy has it UP
  link HOST down|up        cut or restore HOST's network link
  down                     kill every process, remove every namespace (idempotent; also after Ctrl-C)
  autoscale [--min 2] [--max 4] [--interval-ms 1000] [--scale-out-cpu 0.6] [--scale-in-cpu 0.2]
            [--p99-ms 0 (off)] [--cooldown-out-ms 5000] [--cooldown-in-ms 15000] [--duration-s S]
                           add/remove app hosts from measured CPU and latency (needs up --max-apps)
  all commands: --name NAME (default "default"), -h/--help
The cluster's addresses exist only inside its namespaces: reach them with ip netns exec tm-client ...`;

const ARGS = {
  name: { type: "string", default: CLUSTER_DEFAULTS.name },
  apps: { type: "string", default: String(CLUSTER_DEFAULTS.apps) },
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
  workers: { type: "string", default: String(CLUSTER_DEFAULTS.workers) },
  store: { type: "string", default: CLUSTER_DEFAULTS.store },
  subnet: { type: "string", default: CLUSTER_DEFAULTS.subnet },
  "lb-mode": { type: "string", default: CLUSTER_DEFAULTS.lbMode },
  json: { type: "boolean", default: false },
} as const;

/** What `up` prints: only commands that work from this shell (the LB address is namespace-only). */
function howToReach(state: ClusterState): string {
  const ns = state.hosts.client?.namespace as string;
  const token = state.adminTokenFile as string;
  const nameFlag = state.name === "default" ? "" : ` --name ${state.name}`;
  return [
    `cluster '${state.name}' is up: ${state.apps} app hosts x ${state.workers} workers, Redis, HAProxy (lb-mode ${state.lbMode})`,
    `Its addresses (${state.subnet}) exist only inside its network namespaces: from the root namespace they`,
    `route off this machine. Use the client namespace:`,
    `  ip netns exec ${ns} curl ${state.lbUrl}/turno/demo`,
    `  ip netns exec ${ns} curl -H "Authorization: Bearer $(cat ${token})" ${state.lbUrl}/admin/turno/demo/ledger`,
    `  ip netns exec ${ns} curl ${state.lbStatsUrl}        (HAProxy metrics)`,
    `Admin token: ${token} (mode 0600; every app host has it as TURNOMATIC_ADMIN_TOKEN${process.env.TURNOMATIC_ADMIN_TOKEN ? ", taken from your TURNOMATIC_ADMIN_TOKEN" : ", generated"})`,
    `Status: npm run cluster -- status${nameFlag}   Remove: npm run cluster -- down${nameFlag}`,
    "",
  ].join("\n");
}

/** `status --json`: one JSON document on stdout and nothing else; {"up": false} and exit 1 when not up. */
async function statusJson(name: string): Promise<void> {
  let state: ClusterState;
  try {
    state = loadState(name);
  } catch (error) {
    if (!(error instanceof ClusterError)) throw error;
    process.stdout.write(`${JSON.stringify({ name, up: false, reason: error.message })}\n`);
    process.stderr.write(`cluster: ${error.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${JSON.stringify(await status(state), null, 2)}\n`);
}

async function main(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommandLine({ name: "cluster", usage: USAGE, options: ARGS }, argv);
  const [command, host, arg] = positionals;
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  if (command === undefined) throw new UsageError("no command given.");
  requireClusterRoot();
  const name = values.name;
  const needHost = () => {
    if (host === undefined) throw new ClusterError(`'${command}' needs a HOST (e.g. app1); see 'status'.`);
    return host;
  };
  switch (command) {
    case "up": {
      // Ctrl-C while the topology comes up: take down what exists, as a failure would.
      const interrupted = () => {
        down(name);
        process.stderr.write(`cluster: interrupted; cluster '${name}' removed\n`);
        process.exit(130);
      };
      process.once("SIGINT", interrupted);
      process.once("SIGTERM", interrupted);
      const state = await up({
        name,
        apps: integerArg(values.apps, "apps", CLUSTER_DEFAULTS.apps, 1, 200),
        workers: integerArg(values.workers, "workers", CLUSTER_DEFAULTS.workers, 1, 64),
        store: values.store,
        subnet: values.subnet,
        lbMode: values["lb-mode"],
        ...(values["max-apps"] === undefined
          ? {}
          : { maxApps: integerArg(values["max-apps"], "max-apps", CLUSTER_DEFAULTS.apps, 1, 200) }),
      });
      process.off("SIGINT", interrupted);
      process.off("SIGTERM", interrupted);
      process.stdout.write(howToReach(state));
      return;
    }
    case "status": {
      if (values.json) return statusJson(name);
      const report = await status(loadState(name));
      process.stdout.write(
        `cluster ${report.name}  lb-mode ${report.lbMode}  LB: ip netns exec ${report.clientNamespace} curl ${report.lbUrl}/turno/<id>\n`,
      );
      for (const h of report.hosts as Array<Record<string, unknown>>) {
        const pids = (h.pids as number[]).join(",") || "-";
        process.stdout.write(
          `  ${String(h.name).padEnd(8)} ${String(h.role).padEnd(6)} ${String(h.namespace).padEnd(20)} ${String(h.address ?? "").padEnd(14)} link=${h.link ?? "-"} lb=${h.lb ?? "-"} pids=${pids}\n`,
        );
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
      throw new UsageError(`unknown command '${command}'.`);
  }
}

try {
  await main(process.argv.slice(2));
} catch (error) {
  if (error instanceof UsageError) {
    process.stderr.write(`cluster: ${error.message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (error instanceof ClusterError) {
    process.stderr.write(`cluster: ${error.message}\n`);
    process.exit(1);
  }
  throw error;
}
