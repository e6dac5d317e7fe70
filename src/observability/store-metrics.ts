/**
 * Store durability as a metric, so an alert can fire on a deployment whose Redis would roll counters
 * back on restart (AOF off or appendfsync not always). Lives in prom-client's default registry next
 * to the other turnomatic_* metrics; rollback fences are counted by the main metrics module from
 * the coalescer's stats, not here.
 */
import { Gauge, register } from "prom-client";

const NAME = "turnomatic_store_durability_warning";

/** The gauge, created once per process (a second copy of the module must not register it twice). */
const durabilityWarning: Gauge<"store"> =
  (register.getSingleMetric(NAME) as Gauge<"store"> | undefined) ??
  new Gauge({
    name: NAME,
    help: "1 when the store's settings let a restart lose acknowledged numbers (see the store.durability log and docs/redis.md), else 0",
    labelNames: ["store"],
    // Workers share one store: their values agree, so a supervisor should not add them up.
    aggregator: "max",
  });

/** Publishes the start-up durability check of `store` (its kind, e.g. "redis-sentinel"). */
export function recordDurability(store: string, warnings: readonly string[]): void {
  durabilityWarning.set({ store }, warnings.length > 0 ? 1 : 0);
}
