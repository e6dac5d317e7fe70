/**
 * Store durability as a metric, so an alert can fire on a deployment whose Redis would roll counters
 * back on restart (AOF off or appendfsync not always). Lives in prom-client's default registry next
 * to the other turnomatic_* metrics; rollback fences are counted by the main metrics module from
 * the coalescer's stats, not here.
 */
import { Gauge, register } from "prom-client";
import type { DurabilityState } from "../stores/redis-checks.ts";

const NAME = "turnomatic_store_durability_warning";

/** The gauge, created once per process (a second copy of the module must not register it twice). */
const durabilityWarning: Gauge<"store"> =
  (register.getSingleMetric(NAME) as Gauge<"store"> | undefined) ??
  new Gauge({
    name: NAME,
    help: "1 when the store's settings let a restart or eviction lose acknowledged numbers, 2 when they cannot be verified (settings unreadable with this user, or store unreachable at start), else 0; see the store.durability log and docs/redis.md",
    labelNames: ["store"],
    // Workers share one store: their values agree, so a supervisor should not add them up.
    aggregator: "max",
  });

const GAUGE_VALUE: Record<DurabilityState, number> = { ok: 0, "at-risk": 1, unknown: 2 };

/** Publishes the start-up durability check of `store` (its kind, e.g. "redis-sentinel"). */
export function recordDurability(store: string, state: DurabilityState): void {
  durabilityWarning.set({ store }, GAUGE_VALUE[state]);
}
