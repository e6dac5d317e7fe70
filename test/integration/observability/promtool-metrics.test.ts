/**
 * `promtool check metrics` (Prometheus' own linter) accepts a live scrape of a started service:
 * one process, and a supervisor of two workers (its /metrics merges theirs). Traffic first, so
 * every labelled series exists (turns, a 404, an admin PUT, a 503-free store). Fails on names such
 * as turnomatic_counter_max_fraction ("metric name should not include type 'counter'") or gauges
 * ending in _total.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { requireBinary } from "../../../harness/binaries.ts";
import { adminHeaders, type ServiceProcess, startService } from "../../../harness/service.ts";

const started: ServiceProcess[] = [];
afterAll(async () => {
  for (const service of started) await service.stop();
});

function promtoolCheck(scrape: string): { code: number; output: string } {
  const promtool = requireBinary("promtool", "apt-get install prometheus");
  const result = Bun.spawnSync([promtool, "check", "metrics"], { stdin: Buffer.from(scrape), stdout: "pipe", stderr: "pipe" });
  return { code: result.exitCode, output: `${result.stdout}${result.stderr}`.trim() };
}

async function liveScrape(env: Record<string, string> = {}): Promise<string> {
  const service = await startService({ env });
  started.push(service);
  for (let i = 0; i < 5; i++) await fetch(`${service.url}/turno/lint-${i % 2}`, { method: "POST" });
  await fetch(`${service.url}/nowhere`);
  await fetch(`${service.url}/admin/turno/lint-0`, { method: "PUT", headers: adminHeaders(), body: '{"turno": 9}' });
  await fetch(`${service.url}/turno/lint-0/actual`);
  const metricsUrl = `http://127.0.0.1:${service.metricsPort}/metrics`;
  // A supervisor's /metrics is up a moment after its workers answer.
  for (let attempt = 0; attempt < 50; attempt++) {
    const response = await fetch(metricsUrl).catch(() => undefined);
    const text = response?.ok ? await response.text() : "";
    if (text.includes("turnomatic_http_requests_total{")) return text;
    await Bun.sleep(100);
  }
  throw new Error(`no turnomatic metrics at ${metricsUrl}`);
}

describe("promtool check metrics", () => {
  test("accepts a live scrape of one process", async () => {
    const scrape = await liveScrape();
    expect(scrape).toContain('code="200"');
    expect(scrape).toContain("turnomatic_highest_turno_ratio ");
    expect(promtoolCheck(scrape)).toEqual({ code: 0, output: "" });
  }, 60_000);

  test("accepts a live scrape of a supervisor with two workers", async () => {
    const scrape = await liveScrape({ TURNOMATIC_WORKERS: "2" });
    expect(scrape).toMatch(/^turnomatic_workers 2$/m);
    expect(promtoolCheck(scrape)).toEqual({ code: 0, output: "" });
  }, 60_000);

  test("rejects what it should (the check can fail)", () => {
    const bad =
      "# HELP turnomatic_counter_max_fraction x\n# TYPE turnomatic_counter_max_fraction gauge\nturnomatic_counter_max_fraction 0.5\n";
    const result = promtoolCheck(bad);
    expect(result.code).not.toBe(0);
    expect(result.output).toContain("turnomatic_counter_max_fraction");
  });
});
