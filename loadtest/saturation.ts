/** Reads a step's CPU figures and names what ran out first. */
export type StepCpu = Record<string, number>;

export function describeCpu(cpu: StepCpu): string {
  return Object.entries(cpu)
    .filter(([name]) => name !== "hostCores")
    .map(([name, value]) => `${name} ${value}%`)
    .join(", ");
}

/**
 * A single-threaded process (one Bun worker, Redis, HAProxy without nbthread) saturates near 100%
 * of one core; the host saturates when all its cores are busy, which on a small machine is what
 * happens first because the generator shares them.
 */
export function saturation(cpu: StepCpu): string {
  const found: string[] = [];
  let measured = 0;
  for (const [name, value] of Object.entries(cpu)) {
    if (name === "host" || name === "hostCores") continue;
    measured += value;
    if (value >= 85) found.push(`${name} at ${value}% of a core`);
  }
  const host = cpu.host ?? 0;
  const cores = cpu.hostCores ?? 1;
  // What the host's busy time holds beyond the watched processes and this generator: other work.
  const others = Math.max(0, Math.round(host * cores - measured));
  if (host >= 90)
    found.push(
      `the host's ${cores} cores at ${host}% (watched processes and generator ${Math.round(measured)}% of a core, other processes ~${others}%)`,
    );
  if (found.length === 0)
    return `no process near a full core (host ${host}%): latency, not CPU, broke the SLO (${describeCpu(cpu)})`;
  return found.join("; ");
}
