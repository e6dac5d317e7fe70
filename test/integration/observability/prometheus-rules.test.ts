/**
 * The alerting rules, Prometheus and Alertmanager configs in deploy/ are valid, every alert is unit
 * tested with `promtool test rules` (a firing and a quiet case each) and has a runbook section.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { requireBinary } from "../../../harness/binaries.ts";

const ROOT = join(import.meta.dir, "../../..");
const RULES = join(ROOT, "deploy/prometheus/turnomatic-rules.yml");
const RULE_TESTS = join(ROOT, "deploy/prometheus/tests/turnomatic-rules.test.yml");

interface AlertRule {
  alert: string;
  expr: string;
  annotations?: Record<string, string>;
}

export function alertRules(path = RULES): AlertRule[] {
  const parsed = Bun.YAML.parse(readFileSync(path, "utf8")) as { groups: Array<{ rules: AlertRule[] }> };
  return parsed.groups.flatMap((group) => group.rules).filter((rule) => rule.alert !== undefined);
}

function run(command: string[], cwd = ROOT): { code: number; output: string } {
  const result = Bun.spawnSync(command, { cwd, stdout: "pipe", stderr: "pipe" });
  return { code: result.exitCode, output: `${result.stdout.toString()}${result.stderr.toString()}` };
}

describe("prometheus rules", () => {
  const promtool = requireBinary("promtool", "apt-get install prometheus");

  test("promtool check rules and check config accept the files", () => {
    const rules = run([promtool, "check", "rules", RULES]);
    expect(rules.output).toContain("SUCCESS");
    expect(rules.code).toBe(0);
    const config = run([promtool, "check", "config", "prometheus.yml"], join(ROOT, "deploy/prometheus"));
    expect(config.code).toBe(0);
  });

  test("promtool test rules passes", () => {
    const result = run([promtool, "test", "rules", RULE_TESTS]);
    if (result.code !== 0) console.error(result.output);
    expect(result.code).toBe(0);
  });

  test("every alert has a firing case and a quiet case in the unit tests", () => {
    const tests = Bun.YAML.parse(readFileSync(RULE_TESTS, "utf8")) as {
      tests: Array<{ alert_rule_test: Array<{ alertname: string; exp_alerts: unknown[] }>; input_series: unknown[] }>;
    };
    const fires = new Set<string>();
    const quietSeries = new Set<string>();
    for (const group of tests.tests) {
      for (const check of group.alert_rule_test) {
        // A firing case names fewer alerts than there are targets in its input, so some target is
        // quiet too; cases with no expected alert are quiet by definition.
        if (check.exp_alerts.length > 0) fires.add(check.alertname);
        if (check.exp_alerts.length === 0 || group.input_series.length > check.exp_alerts.length)
          quietSeries.add(check.alertname);
      }
    }
    for (const rule of alertRules()) {
      expect({ alert: rule.alert, fires: fires.has(rule.alert) }).toEqual({ alert: rule.alert, fires: true });
      expect({ alert: rule.alert, quiet: quietSeries.has(rule.alert) }).toEqual({ alert: rule.alert, quiet: true });
    }
  });

  test("the unit tests catch a broken threshold", () => {
    // Guards against tests that cannot fail: a CPU rule that never fires must fail its test.
    const dir = mkdtempSync(join(tmpdir(), "turnomatic-rules-"));
    try {
      writeFileSync(join(dir, "turnomatic-rules.yml"), readFileSync(RULES, "utf8").replace("> 0.8", "> 0.95"));
      const testsDir = join(dir, "tests");
      Bun.spawnSync(["mkdir", "-p", testsDir]);
      writeFileSync(join(testsDir, "rules.test.yml"), readFileSync(RULE_TESTS, "utf8"));
      const result = run([promtool, "test", "rules", join(testsDir, "rules.test.yml")]);
      expect(result.code).not.toBe(0);
      expect(result.output).toContain("TurnomaticProcessCpuHigh");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("every alert links a runbook section that exists, under the configurable absolute base", () => {
    const runbook = readFileSync(join(ROOT, "docs/guides/runbook.md"), "utf8");
    const anchors = new Set([...runbook.matchAll(/^## (\w+)/gm)].map((match) => (match[1] ?? "").toLowerCase()));
    for (const rule of alertRules()) {
      expect(rule.annotations?.runbook_url).toBe(`{{ $externalLabels.runbook_base_url }}#${rule.alert.toLowerCase()}`);
      expect({ alert: rule.alert, inRunbook: anchors.has(rule.alert.toLowerCase()) }).toEqual({
        alert: rule.alert,
        inRunbook: true,
      });
    }
  });

  test("every alert has a summary and a description", () => {
    for (const rule of alertRules()) {
      const { summary, description } = rule.annotations ?? {};
      expect({ alert: rule.alert, summary: (summary ?? "").length > 10, description: (description ?? "").length > 40 }).toEqual({
        alert: rule.alert,
        summary: true,
        description: true,
      });
    }
  });

  test("no rule selects on job, and one fires when every target is gone", () => {
    for (const rule of alertRules())
      expect({ alert: rule.alert, job: /\bjob\s*=/.test(rule.expr) }).toEqual({ alert: rule.alert, job: false });
    expect(alertRules().some((rule) => /^absent\(/.test(rule.expr.trim()))).toBe(true);
  });

  test("every shipped Prometheus config sets the runbook base as an absolute URL", () => {
    for (const path of ["deploy/prometheus/prometheus.yml", "deploy/compose/prometheus.yml"]) {
      const config = Bun.YAML.parse(readFileSync(join(ROOT, path), "utf8")) as {
        global?: { external_labels?: Record<string, string> };
      };
      expect({ path, base: config.global?.external_labels?.runbook_base_url ?? "" }).toEqual({
        path,
        base: expect.stringMatching(/^https?:\/\/[^/]+\/.*runbook/),
      });
    }
    // The unit tests render the annotation as Prometheus does: absolute.
    const tests = readFileSync(RULE_TESTS, "utf8");
    expect(tests).not.toMatch(/runbook_url: (?!https:\/\/)/);
  });
});

describe("alertmanager config", () => {
  test("amtool check-config accepts it and it has a webhook receiver", () => {
    const amtool = requireBinary("amtool", "apt-get install prometheus-alertmanager");
    const path = join(ROOT, "deploy/alertmanager/alertmanager.yml");
    const result = run([amtool, "check-config", path]);
    expect(result.output).toContain("SUCCESS");
    expect(result.code).toBe(0);
    const config = Bun.YAML.parse(readFileSync(path, "utf8")) as { receivers: Array<{ webhook_configs?: unknown[] }> };
    expect(config.receivers.some((receiver) => (receiver.webhook_configs?.length ?? 0) > 0)).toBe(true);
  });
});
