/**
 * The Grafana dashboard and provisioning files parse, and every PromQL expression is valid
 * (promtool checks it as a recording rule) and reads only metrics that exist: Turnomatic's from a
 * live scrape of a running service, node_exporter's from a short allow-list.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "yaml";
import { requireBinary } from "../../../harness/binaries.ts";
import { type ServiceProcess, startService } from "../../../harness/service.ts";

const REPO = join(import.meta.dir, "../../..");
const GRAFANA = join(REPO, "deploy/grafana");
/** Host metrics come from node_exporter, which the suite does not run. */
const NODE_EXPORTER_METRICS = new Set(["node_cpu_seconds_total"]);
const PROMQL_WORDS = new Set([
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "and",
  "or",
  "unless",
  "bool",
  "offset",
]);

interface Panel {
  type: string;
  title: string;
  panels?: Panel[];
  targets?: Array<{ expr: string }>;
}
const dashboard = JSON.parse(readFileSync(join(GRAFANA, "dashboards/turnomatic.json"), "utf8")) as {
  uid: string;
  panels: Panel[];
  templating: { list: Array<{ name: string; query: unknown }> };
};
const panels = dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
const exprs = panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ title: panel.title, expr: target.expr })));

/** Grafana's variables replaced by values Prometheus accepts. */
function concrete(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$instance", ".*").replaceAll("$job", ".*");
}

/** Metric names an expression reads: identifiers followed by a selector or range, or bare ones that are not PromQL words. */
function metricNames(expr: string): string[] {
  const withoutStrings = concrete(expr)
    .replace(/"[^"]*"/g, '""')
    .replace(/\{[^}]*\}/g, "{}")
    .replace(/\[[^\]]*\]/g, "[]");
  const withoutGrouping = withoutStrings.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, "");
  const names = new Set<string>();
  for (const match of withoutGrouping.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\(|\{|\[)?/g)) {
    const [, name, next] = match;
    if (name === undefined || next === "(" || PROMQL_WORDS.has(name)) continue;
    if (/^\d/.test(name)) continue;
    names.add(name);
  }
  return [...names];
}

let service: ServiceProcess;
let scraped: Set<string>;

beforeAll(async () => {
  service = await startService({ store: "memory:" });
  await fetch(`${service.url}/turno/warmup`, { method: "POST" });
  const text = await (await fetch(`http://127.0.0.1:${service.metricsPort}/metrics`)).text();
  scraped = new Set([...text.matchAll(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{| )/gm)].map((m) => m[1] ?? ""));
  scraped.add("up"); // Prometheus's own per-target series
});
afterAll(async () => {
  await service?.stop("SIGKILL");
});

describe("grafana", () => {
  test("provisioning files parse and point at the dashboard folder and Prometheus", () => {
    const datasources = Bun.YAML.parse(readFileSync(join(GRAFANA, "provisioning/datasources/prometheus.yml"), "utf8")) as {
      datasources: Array<{ type: string }>;
    };
    expect(datasources.datasources[0]?.type).toBe("prometheus");
    const providers = Bun.YAML.parse(readFileSync(join(GRAFANA, "provisioning/dashboards/turnomatic.yml"), "utf8")) as {
      providers: Array<{ type: string; options: { path: string } }>;
    };
    expect(providers.providers[0]?.type).toBe("file");
    expect(dashboard.uid).toBe("turnomatic");
  });

  test("the dashboard covers rps, errors, p50/p99, batch size, CPU, store latency and per-host panels", () => {
    const all = exprs.map((e) => e.expr).join("\n");
    for (const needle of [
      "turnomatic_http_requests_total",
      'code=~"5..',
      "histogram_quantile(0.5",
      "histogram_quantile(0.99",
      "turnomatic_batch_size",
      "process_cpu_seconds_total",
      "node_cpu_seconds_total",
      "turnomatic_store_round_trip_seconds_bucket",
      "sum by (instance)",
      "turnomatic_store_durability_warning",
      "turnomatic_store_writes_failing",
    ]) {
      expect({ needle, found: all.includes(needle) }).toEqual({ needle, found: true });
    }
  });

  test("no expression hard-codes a job; a Job variable selects it (Kubernetes discovery names jobs freely)", () => {
    expect(exprs.filter((e) => /job\s*=\s*"/.test(e.expr)).map((e) => e.title)).toEqual([]);
    expect(exprs.filter((e) => /turnomatic_/.test(e.expr) && !e.expr.includes('job=~"$job"')).map((e) => e.title)).toEqual([]);
    expect(dashboard.templating.list.map((variable) => variable.name)).toContain("job");
  });

  test("every expression is valid PromQL", () => {
    const promtool = requireBinary("promtool", "apt-get install prometheus");
    const dir = mkdtempSync(join(tmpdir(), "turnomatic-grafana-"));
    try {
      const rules = {
        groups: [{ name: "dashboard", rules: exprs.map((e, i) => ({ record: `dashboard:expr_${i}`, expr: concrete(e.expr) })) }],
      };
      writeFileSync(join(dir, "rules.yml"), JSON.stringify(rules));
      const result = Bun.spawnSync([promtool, "check", "rules", join(dir, "rules.yml")], { stdout: "pipe", stderr: "pipe" });
      if (result.exitCode !== 0) console.error(result.stdout.toString(), result.stderr.toString());
      expect(result.exitCode).toBe(0);
      expect(exprs.length).toBeGreaterThan(20);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("every metric an expression reads exists in a live scrape (or comes from node_exporter)", () => {
    const missing: string[] = [];
    for (const { title, expr } of exprs) {
      for (const name of metricNames(expr)) {
        if (!scraped.has(name) && !NODE_EXPORTER_METRICS.has(name)) missing.push(`${title}: ${name}`);
      }
    }
    expect(missing).toEqual([]);
    // The extractor itself finds names (a test that cannot fail would pass on an empty list).
    expect(metricNames('sum by (le) (rate(turnomatic_batch_size_bucket{job="x"}[1m])) / up')).toEqual([
      "turnomatic_batch_size_bucket",
      "up",
    ]);
  });
});

/**
 * What Grafana in docker-compose.yml sees: its bind mounts map container paths to repo paths, and
 * its environment feeds the $VAR references of the provisioning files.
 */
describe("grafana provisioning as docker-compose.yml mounts it", () => {
  type Service = {
    volumes?: string[];
    environment?: Record<string, string>;
    expose?: string[];
    ports?: string[];
    command?: string[];
  };
  const compose = parse(readFileSync(join(REPO, "docker-compose.yml"), "utf8")) as { services: Record<string, Service> };
  const grafana = compose.services.grafana as Service;
  const mounts = (grafana.volumes ?? [])
    .filter((volume) => volume.startsWith("./"))
    .map((volume) => {
      const [host, container] = volume.split(":") as [string, string];
      return { host: join(REPO, host), container };
    })
    .sort((a, b) => b.container.length - a.container.length);
  /** The repo path a container path resolves to, through the longest matching bind mount. */
  const resolveInContainer = (path: string): string | undefined => {
    const mount = mounts.find((m) => path === m.container || path.startsWith(`${m.container}/`));
    return mount === undefined ? undefined : join(mount.host, path.slice(mount.container.length));
  };
  const expand = (text: string, where: string): string =>
    text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, braced: string | undefined, bare: string | undefined) => {
      const name = (braced ?? bare) as string;
      const value = grafana.environment?.[name];
      if (value === undefined) throw new Error(`${where} uses $${name}, which the grafana service does not set`);
      return value;
    });

  test("the provisioning folder is mounted where Grafana reads it", () => {
    const provisioning = grafana.environment?.GF_PATHS_PROVISIONING ?? "/etc/grafana/provisioning";
    expect(resolveInContainer(provisioning)).toBe(join(GRAFANA, "provisioning"));
  });

  test("every dashboards provider path resolves to a mounted folder holding the dashboard", () => {
    const providers = parse(readFileSync(join(GRAFANA, "provisioning/dashboards/turnomatic.yml"), "utf8")) as {
      providers: Array<{ options: { path: string } }>;
    };
    for (const provider of providers.providers) {
      const hostPath = resolveInContainer(provider.options.path);
      expect({ path: provider.options.path, resolves: hostPath !== undefined }).toEqual({
        path: provider.options.path,
        resolves: true,
      });
      expect(readFileSync(join(hostPath as string, "turnomatic.json"), "utf8")).toContain('"uid": "turnomatic"');
    }
  });

  test("every datasource URL comes from the environment compose sets and names a compose service", () => {
    const datasources = parse(readFileSync(join(GRAFANA, "provisioning/datasources/prometheus.yml"), "utf8")) as {
      datasources: Array<{ name: string; url: string }>;
    };
    const fromEnvironment = Object.values(grafana.environment ?? {});
    for (const datasource of datasources.datasources) {
      // A literal URL would ignore what compose configures (it was http://127.0.0.1:9090).
      expect({ name: datasource.name, variable: /\$/.test(datasource.url) }).toEqual({ name: datasource.name, variable: true });
      const url = new URL(expand(datasource.url, `datasource ${datasource.name}`));
      expect(fromEnvironment).toContain(url.href.replace(/\/$/, ""));
      const service = compose.services[url.hostname];
      expect({ name: datasource.name, service: url.hostname, exists: service !== undefined }).toEqual({
        name: datasource.name,
        service: url.hostname,
        exists: true,
      });
    }
    expect(datasources.datasources.some((d) => d.url.includes("PROMETHEUS_URL"))).toBe(true);
  });
});
