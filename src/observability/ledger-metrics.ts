/**
 * The ledger and the store guard as metrics. The store-wide numbers are read from the store's own
 * totals (every process reads the same values), so they are gauges merged with `max` over workers;
 * across hosts aggregate them with `max`, never `sum` (docs/reference/metrics.md).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { Coalescer } from "../allocation/coalescer.ts";
import type { Ledger } from "../domain/counter-store.ts";
import type { GuardState } from "../stores/store-guard.ts";

export interface LedgerSources {
  readonly totals: () => Promise<Ledger>;
  readonly guard: () => GuardState;
  readonly coalescer: Coalescer;
}

/** Longest a scrape waits for the store's totals (ms); a slow store leaves the last values. */
const TOTALS_TIMEOUT_MS = 500;

export function registerLedgerMetrics(registry: Registry, sources: LedgerSources): void {
  const registers = [registry];
  let last: Ledger = { issued: 0, delivered: 0 };
  // The three gauges are collected together: one read of the totals per scrape serves them all.
  let reading: Promise<Ledger> | undefined;
  const refresh = () => {
    reading ??= within(sources.totals(), TOTALS_TIMEOUT_MS).then((totals) => {
      last = totals ?? last;
      setTimeout(() => {
        reading = undefined;
      }, 100);
      return last;
    });
    return reading;
  };
  new Gauge({
    name: "turnomatic_store_numbers_issued",
    help: "Numbers granted by the store since it was initialized, all ids and hosts (the store's own total).",
    aggregator: "max",
    registers,
    async collect() {
      this.set((await refresh()).issued);
    },
  });
  new Gauge({
    name: "turnomatic_store_numbers_delivered",
    help: "Numbers reported as handed to a live client, all ids and hosts (the store's own total).",
    aggregator: "max",
    registers,
    async collect() {
      this.set((await refresh()).delivered);
    },
  });
  new Gauge({
    name: "turnomatic_store_numbers_lost",
    help: "issued - delivered: numbers no client got (failed, abandoned, in doubt, gone with a host, or delivered after the last report).",
    aggregator: "max",
    registers,
    async collect() {
      const { issued, delivered } = await refresh();
      this.set(Math.max(0, issued - delivered));
    },
  });
  new Gauge({
    name: "turnomatic_store_refusing",
    help: "1 while this process refuses every turn because the store lost data or went backwards (see the store.refusing log), else 0.",
    aggregator: "max",
    registers,
    collect() {
      this.set(sources.guard().status === "refusing" ? 1 : 0);
    },
  });
  new Gauge({
    name: "turnomatic_fenced_ids",
    help: "Ids whose rollback fence this process keeps (bounded by --fence-max-ids).",
    aggregator: "sum",
    registers,
    collect() {
      this.set(sources.coalescer.fencedIds);
    },
  });
  const stats = sources.coalescer.stats;
  new Counter({
    name: "turnomatic_ledger_unreported_numbers_total",
    help: "Deliveries whose report to the ledger failed: the store counts them as lost (an overcount).",
    aggregator: "sum",
    registers,
    collect() {
      this.reset();
      this.inc(stats.ledgerDropped);
    },
  });
}

async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise.catch(() => undefined), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
