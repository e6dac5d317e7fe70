/**
 * Store health as metrics: durability, so an alert can fire on a deployment whose Redis would roll
 * counters back on restart (AOF off or appendfsync not always), and the local store's write
 * failures (disk full, I/O error, read-only; src/stores/write-health.ts). Lives in prom-client's
 * default registry next to the other turnomatic_* metrics; rollback fences are counted by the main
 * metrics module from the coalescer's stats, not here.
 */
import { Counter, Gauge, register } from "prom-client";
import type { WriteHealthObserver } from "../stores/write-health.ts";
import type { Logger } from "./logger.ts";
import type { DurabilityState } from "../stores/redis-checks.ts";

const NAME = "turnomatic_store_durability_warning";

/** The gauge, created once per process (a second copy of the module must not register it twice). */
const durabilityWarning: Gauge<"store"> =
  (register.getSingleMetric(NAME) as Gauge<"store"> | undefined) ??
  new Gauge({
    name: NAME,
    help: "1 when the store's settings let a restart or eviction lose acknowledged numbers, 2 when they cannot be verified (settings unreadable with this user, or store unreachable at start), else 0; see the store.durability log and docs/guides/redis.md",
    labelNames: ["store"],
    // Workers share one store: their values agree, so a supervisor should not add them up.
    aggregator: "max",
  });

const GAUGE_VALUE: Record<DurabilityState, number> = { ok: 0, "at-risk": 1, unknown: 2 };

/** Publishes the start-up durability check of `store` (its kind, e.g. "redis-sentinel"). */
export function recordDurability(store: string, state: DurabilityState): void {
  durabilityWarning.set({ store }, GAUGE_VALUE[state]);
}

const WRITE_FAILURES = "turnomatic_store_write_failures_total";
const WRITES_FAILING = "turnomatic_store_writes_failing";

const writeFailures: Counter =
  (register.getSingleMetric(WRITE_FAILURES) as Counter | undefined) ??
  new Counter({
    name: WRITE_FAILURES,
    help: "Write transactions of a local store (SQLite) that failed for a storage reason: disk full, I/O error, read-only file.",
    aggregator: "sum",
  });

const writesFailing: Gauge =
  (register.getSingleMetric(WRITES_FAILING) as Gauge | undefined) ??
  new Gauge({
    name: WRITES_FAILING,
    help: "1 while the local store's writes fail (from the first failure to the next successful write; /readyz answers 503 meanwhile), else 0.",
    // Any worker that cannot write makes the host's value 1.
    aggregator: "max",
  });

/**
 * Counts failed writes and logs each episode twice, when it starts (error) and when a write
 * succeeds again (info), whatever the number of failed transactions in between; works with the
 * metrics port off too (the log lines do not depend on it).
 */
export function storeWriteObserver(logger: Logger): WriteHealthObserver {
  writesFailing.set(0);
  return {
    onWriteFailure: () => writeFailures.inc(),
    onEpisode: (episode) => {
      writesFailing.set(episode.state === "failing" ? 1 : 0);
      if (episode.state === "failing") {
        logger.error(
          `store writes are failing (${episode.code}): turns get 503 and /readyz fails until a write succeeds; free disk space or make the database file writable`,
          { event: "store.write_failing", code: episode.code, error: episode.error },
        );
      } else {
        logger.info("store writes work again; /readyz is ready", {
          event: "store.write_recovered",
          code: episode.code,
          failedWrites: episode.failedWrites,
          durationMs: episode.durationMs,
        });
      }
    },
  };
}
