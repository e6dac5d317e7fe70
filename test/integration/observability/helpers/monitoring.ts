/**
 * Real Prometheus and Alertmanager (Debian packages) on free loopback ports with short intervals,
 * and a webhook receiver that records every notification, for the end-to-end alert test.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { requireBinary } from "../../../../harness/binaries.ts";
import { freePort, waitFor } from "../../../../harness/ports.ts";

const ROOT = join(import.meta.dir, "../../../..");

export interface Notification {
  readonly alertname: string;
  readonly status: "firing" | "resolved";
  /** performance.now() when the webhook received it. */
  readonly at: number;
  readonly labels: Record<string, string>;
}

export interface Webhook {
  readonly url: string;
  readonly received: Notification[];
  /** Resolves with the first notification of `alertname` in `status` received after `since`. */
  wait(alertname: string, status: Notification["status"], since: number, timeoutMs: number): Promise<Notification>;
  stop(): void;
}

export function startWebhook(): Webhook {
  const received: Notification[] = [];
  const server = Bun.serve({
    port: 0,
    hostname: "127.0.0.1",
    fetch: async (request) => {
      const body = (await request.json()) as {
        alerts: Array<{ status: Notification["status"]; labels: Record<string, string> }>;
      };
      const at = performance.now();
      for (const alert of body.alerts) {
        received.push({ alertname: alert.labels.alertname ?? "", status: alert.status, at, labels: alert.labels });
      }
      return new Response("ok");
    },
  });
  const find = (alertname: string, status: string, since: number) =>
    received.find((n) => n.alertname === alertname && n.status === status && n.at >= since);
  return {
    url: `http://127.0.0.1:${server.port}/alerts`,
    received,
    wait: async (alertname, status, since, timeoutMs) => {
      await waitFor(`${alertname} ${status} at the webhook`, () => find(alertname, status, since) !== undefined, timeoutMs, 100);
      return find(alertname, status, since) as Notification;
    },
    stop: () => server.stop(true),
  };
}

export interface MonitoringProcess {
  readonly url: string;
  stop(): Promise<void>;
}

async function launch(name: string, command: string[], readyUrl: string, dir: string): Promise<MonitoringProcess> {
  const child: Subprocess = Bun.spawn(command, { stdout: "ignore", stderr: "pipe" });
  let log = "";
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr as ReadableStream<Uint8Array>) log += decoder.decode(chunk);
  })();
  const stop = async () => {
    child.kill("SIGKILL");
    await child.exited;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      `${name} ready`,
      async () => {
        if (child.exitCode !== null) throw new Error(`${name} exited with ${child.exitCode}: ${log.slice(-2000)}`);
        return (await fetch(readyUrl)).ok;
      },
      20_000,
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { url: readyUrl.replace(/\/-\/ready$/, ""), stop };
}

/** Alertmanager sending every alert to `webhookUrl` at once (group wait/interval 1 s). */
export async function startAlertmanager(webhookUrl: string): Promise<MonitoringProcess> {
  const binary = requireBinary("prometheus-alertmanager", "apt-get install prometheus-alertmanager");
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-am-"));
  // The repo's config with the test's webhook and short timers; routes and inhibitions stay as shipped.
  const config = readFileSync(join(ROOT, "deploy/alertmanager/alertmanager.yml"), "utf8")
    .replace("http://127.0.0.1:5001/alerts", webhookUrl)
    .replace(/group_wait: \S+/, "group_wait: 1s")
    .replace(/group_interval: \S+/, "group_interval: 1s");
  writeFileSync(join(dir, "alertmanager.yml"), config);
  return launch(
    "alertmanager",
    [
      binary,
      `--config.file=${join(dir, "alertmanager.yml")}`,
      `--storage.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--cluster.listen-address=",
    ],
    `http://127.0.0.1:${port}/-/ready`,
    dir,
  );
}

/**
 * The repo's rules with `for` and rate windows shortened to seconds (and any `extra` edits), so an
 * alert fires within seconds of its cause. The expressions are otherwise the shipped ones.
 */
export function fastRules(extra: (rules: string) => string = (rules) => rules): string {
  const rules = readFileSync(join(ROOT, "deploy/prometheus/turnomatic-rules.yml"), "utf8")
    .replace(/for: \d+m/g, "for: 2s")
    .replace(/\[\d+m\]/g, "[5s]");
  return extra(rules);
}

/** Prometheus scraping `targets` (job turnomatic) every second and alerting to `alertmanagerUrl`. */
export async function startPrometheus(targets: string[], alertmanagerUrl: string, rules: string): Promise<MonitoringProcess> {
  const binary = requireBinary("prometheus", "apt-get install prometheus");
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-prom-"));
  writeFileSync(join(dir, "rules.yml"), rules);
  const config = {
    global: {
      scrape_interval: "1s",
      evaluation_interval: "1s",
      scrape_timeout: "1s",
      external_labels: { runbook_base_url: "https://runbooks.example.com/turnomatic/runbook.md" },
    },
    rule_files: [join(dir, "rules.yml")],
    alerting: { alertmanagers: [{ static_configs: [{ targets: [alertmanagerUrl.replace(/^http:\/\//, "")] }] }] },
    scrape_configs: [{ job_name: "turnomatic", static_configs: [{ targets }] }],
  };
  writeFileSync(join(dir, "prometheus.yml"), JSON.stringify(config));
  return launch(
    "prometheus",
    [
      binary,
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      // Resolved alerts reach Alertmanager a second after they clear instead of a minute.
      "--rules.alert.resend-delay=1s",
    ],
    `http://127.0.0.1:${port}/-/ready`,
    dir,
  );
}
