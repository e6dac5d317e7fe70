/**
 * Store health as metrics: durability, so an alert can fire on a deployment whose Redis would roll
 * counters back on restart (AOF off or appendfsync not always), and the local store's write
 * failures (disk full, I/O error, read-only; src/stores/write-health.ts). Registered in the
 * process's registry next to the other turnomatic_* metrics; rollback fences are counted by the main
 * metrics module from the coalescer's events, not here.
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { WriteHealthObserver } from "../stores/write-health.ts";
import type { Logger } from "./logger.ts";
import type { DurabilityState } from "../stores/redis-checks.ts";

const GAUGE_VALUE: Record<DurabilityState, number> = { ok: 0, "at-risk": 1, unknown: 2 };

export interface StoreMetrics {
  /** Publishes the start-up durability check of `store` (its kind, e.g. "redis-sentinel"). */
  recordDurability(store: string, state: DurabilityState): void;
  /**
   * Counts failed writes and logs each episode twice, when it starts (error) and when a write
   * succeeds again (info), whatever the number of failed transactions in between; works with the
   * metrics port off too (the log lines do not depend on it).
   */
  writeObserver(logger: Logger): WriteHealthObserver;
}

export function createStoreMetrics(registry: Registry): StoreMetrics {
  const registers = [registry];
  const durabilityWarning = new Gauge({
    name: "turnomatic_store_durability_warning",
    help: "1 when the store's settings let a restart or eviction lose acknowledged numbers, 2 when they cannot be verified (settings unreadable with this user, or store unreachable at start), else 0; see the store.durability log and docs/guides/redis.md",
    labelNames: ["store"],
    // Workers share one store: their values agree, so a supervisor should not add them up.
    aggregator: "max",
    registers,
  });
  const writeFailures = new Counter({
    name: "turnomatic_store_write_failures_total",
    help: "Write transactions of a local store (SQLite) that failed for a storage reason: disk full, I/O error, read-only file.",
    aggregator: "sum",
    registers,
  });
  const writesFailing = new Gauge({
    name: "turnomatic_store_writes_failing",
    help: "1 while the local store's writes fail (from the first failure to the next successful write; /readyz answers 503 meanwhile), else 0.",
    // Any worker that cannot write makes the host's value 1.
    aggregator: "max",
    registers,
  });
  writesFailing.set(0);
  return {
    recordDurability: (store, state) => durabilityWarning.set({ store }, GAUGE_VALUE[state]),
    writeObserver: (logger) => ({
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
    }),
  };
}
