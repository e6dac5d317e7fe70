/**
 * Start-up checks of the Redis servers behind a store: persistence (can a restart lose acknowledged
 * numbers?) and eviction (can Redis drop a counter under memory pressure?), on every node that holds
 * or may come to hold the counters (each Cluster node; the Sentinel primary and its replicas).
 *
 * - An evicted counter starts again at 1: every number it had handed out is handed out again (issue
 *   13: 100 of 100 turns were duplicates after eviction and a service restart). So a
 *   `maxmemory-policy` of allkeys-* refuses the start (ConfigError, exit 2) unless
 *   --redis-allow-eviction. volatile-* policies evict only keys with a TTL: counters have none, so
 *   they stay; idempotency keys have one and may go early (a retried request then gets a new number).
 * - Managed services often refuse CONFIG (and INFO, which Redis 7 puts in @dangerous). Then the
 *   settings are read from INFO persistence / INFO memory; if neither answers, the check warns that
 *   it cannot verify them and says what to check on the provider's console. Never a refusal: the
 *   operator may have checked there.
 */
import { ConfigError } from "../domain/errors.ts";
import { classifyStoreError, deniedCommand } from "./store-errors.ts";

/** ok = verified safe; at-risk = a restart or eviction can lose numbers; unknown = not verifiable. */
export type DurabilityState = "ok" | "at-risk" | "unknown";

export interface DurabilityReport {
  readonly state: DurabilityState;
  /** One warn line each (what can be lost, or what could not be verified and where to check it). */
  readonly warnings: readonly string[];
  /** Facts worth one info line (e.g. a volatile-* eviction policy). */
  readonly notes: readonly string[];
}

/** The commands the checks send; ioredis's Redis (and a Cluster node) has both. */
export interface CheckedClient {
  config(subcommand: "GET", parameter: string): Promise<unknown>;
  info(section: string): Promise<string>;
}

export interface CheckedNode {
  /** How the node is named in a warning: "redis store", "redis-cluster node 10.0.0.1:7000"... */
  readonly label: string;
  readonly client: CheckedClient;
  /** Closes a connection made for the check only (a probe); called once the check is done. */
  readonly dispose?: () => void;
}

/** ioredis options of a probe: one attempt, no retries; a probe that fails is reported, not retried. */
export const PROBE_OPTIONS = {
  connectTimeout: 1000,
  commandTimeout: 2000,
  maxRetriesPerRequest: 0,
  retryStrategy: () => null,
  enableReadyCheck: false,
} as const;

export interface CheckOptions {
  /** Accept an eviction policy that can evict counters (warn instead of refusing). Default false. */
  readonly allowEviction?: boolean;
}

/** One node's settings as far as they could be read; `unreadable` says why the rest could not. */
export interface NodeSettings {
  readonly appendonly?: string;
  readonly appendfsync?: string;
  readonly save?: string;
  readonly evictionPolicy?: string;
  /** Set when CONFIG GET was refused or failed (and so appendfsync is unknown). */
  readonly configRefused?: string;
  /** Set when nothing could be read at all. */
  readonly unreadable?: string;
  /** True when that is because the user may not run the commands (not a connection failure). */
  readonly refused?: boolean;
}

/** Why a read failed, briefly: "CONFIG GET is refused (NOPERM)" or the connection cause. */
function reason(error: unknown, command: string): string {
  const message = error instanceof Error ? error.message : String(error);
  if (message.startsWith("NOPERM")) return `${deniedCommand(message) ?? command} is refused for this user (NOPERM)`;
  if (/unknown command/i.test(message)) return `${command} is not available (renamed or disabled by the provider)`;
  return `${command} failed: ${classifyStoreError(error)?.message ?? message}`;
}

/** Reads one server's persistence and eviction settings: CONFIG GET, else INFO. */
export async function readNodeSettings(client: CheckedClient): Promise<NodeSettings> {
  const fromConfig: Record<string, string> = {};
  try {
    for (const name of ["appendonly", "appendfsync", "save", "maxmemory-policy"]) {
      const reply = (await client.config("GET", name)) as unknown[];
      if (reply.length >= 2) fromConfig[name] = String(reply[1]);
    }
    return {
      appendonly: fromConfig.appendonly,
      appendfsync: fromConfig.appendfsync,
      save: fromConfig.save,
      evictionPolicy: fromConfig["maxmemory-policy"],
    };
  } catch (error) {
    const configRefused = reason(error, "CONFIG GET");
    try {
      const persistence = await client.info("persistence");
      const memory = await client.info("memory");
      const aof = /^aof_enabled:(\d)/m.exec(persistence)?.[1];
      const policy = /^maxmemory_policy:(\S+)/m.exec(memory)?.[1];
      return { appendonly: aof === undefined ? undefined : aof === "1" ? "yes" : "no", evictionPolicy: policy, configRefused };
    } catch (infoError) {
      const infoRefused = reason(infoError, "INFO");
      const both = configRefused.endsWith("(NOPERM)") && infoRefused.endsWith("(NOPERM)");
      return {
        configRefused,
        refused: !infoRefused.includes(" failed: "),
        unreadable: both ? "CONFIG GET and INFO are refused for this user (NOPERM)" : `${configRefused}, and ${infoRefused}`,
      };
    }
  }
}

interface Finding {
  readonly state: DurabilityState;
  readonly text: string;
  readonly note?: boolean;
}

function persistenceFinding(settings: NodeSettings): Finding | undefined {
  if (settings.appendonly === undefined) return undefined;
  if (settings.appendonly !== "yes") {
    const rdb = settings.save ? ` (RDB snapshots "${settings.save}" lose everything since the last one)` : "";
    return {
      state: "at-risk",
      text: `appendonly is off${rdb}; a Redis restart can roll counters back. Rollback fencing keeps each process from re-issuing numbers it issued, but a restarted service cannot: set appendonly yes and appendfsync always`,
    };
  }
  if (settings.appendfsync === undefined) {
    return {
      state: "unknown",
      text: `appendonly is on, but appendfsync cannot be verified with this Redis user (${settings.configRefused}); check on the provider's console that every write is fsynced before it is acknowledged (appendfsync always), or a crash can lose up to a second of numbers`,
    };
  }
  if (settings.appendfsync !== "always") {
    return {
      state: "at-risk",
      text: `appendfsync is ${settings.appendfsync}; a Redis crash can lose up to a second of acknowledged numbers. Set appendfsync always for numbers that survive a crash`,
    };
  }
  return undefined;
}

function evictionFinding(policy: string): Finding | undefined {
  if (policy.startsWith("allkeys-")) {
    return {
      state: "at-risk",
      text: `maxmemory-policy is ${policy}, so Redis may evict counters under memory pressure, and an evicted counter starts again at 1 (numbers handed out again). Accepted because --redis-allow-eviction is set; set maxmemory-policy noeviction`,
    };
  }
  if (policy.startsWith("volatile-")) {
    return {
      state: "ok",
      note: true,
      text: `maxmemory-policy is ${policy}: counters carry no TTL, so they are never evicted; idempotency keys have one and may be evicted early under memory pressure (a request retried with such a key then gets a new number). noeviction avoids that`,
    };
  }
  return undefined;
}

/** Nodes whose maxmemory-policy can evict counters, named in the refusal. */
function refuseEviction(kind: string, evicting: ReadonlyArray<{ label: string; policy: string }>): never {
  const where = evicting.map((e) => `${e.label}: ${e.policy}`).join("; ");
  throw new ConfigError(
    `${kind} store: maxmemory-policy can evict counters (${where}). An evicted counter starts again at 1 and hands out numbers already issued. Set maxmemory-policy noeviction (or a volatile-* policy: counters carry no TTL) on every node, or start with --redis-allow-eviction (env TURNOMATIC_REDIS_ALLOW_EVICTION=true) to accept the risk.`,
  );
}

/**
 * Checks every node and returns one report; nodes with the same finding share one warning line.
 * Throws ConfigError when a node's eviction policy can evict counters and that is not allowed.
 */
export async function checkNodes(
  kind: string,
  nodes: readonly CheckedNode[],
  options: CheckOptions = {},
): Promise<DurabilityReport> {
  const findings = new Map<string, { finding: Finding; labels: string[] }>();
  const evicting: Array<{ label: string; policy: string }> = [];
  const add = (label: string, finding: Finding | undefined) => {
    if (finding === undefined) return;
    const entry = findings.get(finding.text) ?? { finding, labels: [] };
    entry.labels.push(label);
    findings.set(finding.text, entry);
  };
  for (const node of nodes) {
    const settings = await readNodeSettings(node.client);
    if (settings.unreadable !== undefined) {
      add(node.label, {
        state: "unknown",
        text: `the persistence and eviction settings ${settings.refused === true ? "cannot be verified with this Redis user" : "could not be read"} (${settings.unreadable}). Check on the provider's console that persistence is on with every write fsynced (appendonly yes, appendfsync always, or the provider's durable equivalent) and that maxmemory-policy is noeviction; otherwise acknowledged numbers can be lost on a restart, or evicted`,
      });
      continue;
    }
    add(node.label, persistenceFinding(settings));
    const policy = settings.evictionPolicy;
    if (policy === undefined) continue;
    if (policy.startsWith("allkeys-") && options.allowEviction !== true) evicting.push({ label: node.label, policy });
    add(node.label, evictionFinding(policy));
  }
  if (evicting.length > 0) refuseEviction(kind, evicting);
  return report(findings);
}

function report(findings: Map<string, { finding: Finding; labels: string[] }>): DurabilityReport {
  const warnings: string[] = [];
  const notes: string[] = [];
  let state: DurabilityState = "ok";
  for (const { finding, labels } of findings.values()) {
    (finding.note === true ? notes : warnings).push(`${labels.join(", ")}: ${finding.text}`);
    if (finding.state === "at-risk") state = "at-risk";
    else if (finding.state === "unknown" && state === "ok") state = "unknown";
  }
  return { state, warnings, notes };
}

/** A start-up check's outcome: a report, or the store could not be reached in time. */
export type StartCheck =
  | DurabilityReport
  | {
      readonly state: "unreachable";
      /** Why, in the service's words (the connection's last error). */
      readonly cause: string;
      /** Resolves when the store connects; check again then. */
      readonly connected: Promise<void>;
    };

/** What checkAtStart needs of a store's connection watch (connection-events.ts). */
export interface ReadyWatch {
  downCause(): string | undefined;
  whenReady(timeoutMs?: number): Promise<boolean>;
}

/**
 * Waits up to `waitMs` for the connection, then checks the nodes. An unreachable store is reported
 * as such, not as settings that "could not be read" (issue 15: that warning misled operators).
 */
export async function checkAtStart(
  kind: string,
  connection: ReadyWatch | undefined,
  nodes: () => Promise<CheckedNode[]>,
  options: CheckOptions,
  waitMs: number,
): Promise<StartCheck> {
  if (connection !== undefined && !(await connection.whenReady(waitMs))) {
    return {
      state: "unreachable",
      cause: connection.downCause() ?? `no connection to the ${kind} store within ${waitMs} ms`,
      connected: connection.whenReady().then(() => undefined),
    };
  }
  const list = await nodes();
  try {
    return await checkNodes(kind, list, options);
  } finally {
    for (const node of list) node.dispose?.();
  }
}
