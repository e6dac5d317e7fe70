/**
 * The one parser of Redis `INFO` output (sections `cpu` and `commandstats`): what redis-server
 * spent and how many commands clients sent, read before and after a measurement.
 */

/** `field:value` lines of an INFO reply (all sections), values as text. */
export function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    if (line === "" || line.startsWith("#")) continue;
    const colon = line.indexOf(":");
    if (colon > 0) fields.set(line.slice(0, colon), line.slice(colon + 1));
  }
  return fields;
}

/** redis-server's CPU seconds (used_cpu_user + used_cpu_sys) from INFO cpu. */
export function redisCpuSeconds(info: string): number {
  const fields = parseInfo(info);
  return Number(fields.get("used_cpu_user") ?? Number.NaN) + Number(fields.get("used_cpu_sys") ?? Number.NaN);
}

/** Calls per command from INFO commandstats (`cmdstat_evalsha:calls=12,...` -> evalsha: 12). */
export function commandCalls(info: string): Map<string, number> {
  const calls = new Map<string, number>();
  for (const [key, value] of parseInfo(info)) {
    if (!key.startsWith("cmdstat_")) continue;
    const match = /(?:^|,)calls=(\d+)/.exec(value);
    if (match !== null) calls.set(key.slice("cmdstat_".length), Number(match[1]));
  }
  return calls;
}

/** Housekeeping a measurement sends itself, not counted as the service's work. */
const OURS = new Set(["info", "ping", "config|get", "config|resetstat", "config", "flushall", "script|load", "script"]);
/** Commands a client sends over the wire; what a script runs inside Redis (HINCRBY...) are only calls. */
const CLIENT_SENT = new Set(["evalsha", "eval", "evalsha_ro", "fcall", "incr", "incrby"]);

/** All calls and client round trips (script or command calls sent by clients), without our housekeeping. */
export function redisWork(info: string): { calls: number; roundTrips: number } {
  let calls = 0;
  let roundTrips = 0;
  for (const [name, n] of commandCalls(info)) {
    if (OURS.has(name)) continue;
    calls += n;
    if (CLIENT_SENT.has(name)) roundTrips += n;
  }
  return { calls, roundTrips };
}
