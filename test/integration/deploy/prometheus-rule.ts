/**
 * deploy/k8s/optional/prometheus-rule.yaml is deploy/prometheus/turnomatic-rules.yml wrapped in a
 * Prometheus Operator PrometheusRule (the groups unchanged). Regenerate it after editing the rules:
 *   ./node_modules/.bin/bun test/integration/deploy/prometheus-rule.ts > deploy/k8s/optional/prometheus-rule.yaml
 * test/integration/deploy/k8s.test.ts fails while the two differ.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";

const REPO = join(import.meta.dir, "../../..");

export function renderPrometheusRule(): string {
  const rules = parse(readFileSync(join(REPO, "deploy/prometheus/turnomatic-rules.yml"), "utf8")) as { groups: unknown[] };
  const object = {
    apiVersion: "monitoring.coreos.com/v1",
    kind: "PrometheusRule",
    metadata: {
      name: "turnomatic",
      labels: { "app.kubernetes.io/name": "turnomatic", "app.kubernetes.io/component": "alerting" },
    },
    spec: { groups: rules.groups },
  };
  return `# Generated from deploy/prometheus/turnomatic-rules.yml by test/integration/deploy/prometheus-rule.ts; do not edit.
# The Turnomatic alerts for the Prometheus Operator (monitoring.coreos.com/v1 CRDs). Your Prometheus
# object's ruleSelector must match these labels (kube-prometheus-stack selects release=<its release>
# by default: add that label in an overlay), and its spec.externalLabels should set
# runbook_base_url (docs/guides/observability.md#alerts).
${stringify(object, { lineWidth: 0 })}`;
}

if (import.meta.main) process.stdout.write(renderPrometheusRule());
