/**
 * Kubernetes manifests (deploy/k8s): built with `kubectl kustomize` (kustomize v5 inside kubectl),
 * every object validated against the Kubernetes OpenAPI models (kubernetes-validator.ts), then the
 * operational invariants that a schema cannot express: probes on the right endpoints, a grace period
 * longer than preStop + drain + shutdown, selectors that match, Redis with fsync on every write.
 * The negative tests feed broken manifests to the same validators to prove they fail.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parse } from "yaml";
import { requireBinary } from "../../../harness/binaries.ts";
import { startRedis } from "../../../harness/redis-server.ts";
import { type ManifestObject, parseManifests, validateKubernetesObjects } from "./kubernetes-validator.ts";
import { renderPrometheusRule } from "./prometheus-rule.ts";
import { checkServiceEnvironment } from "./service-environment.ts";

const REPO = resolve(import.meta.dir, "../../..");
const K8S = join(REPO, "deploy/k8s");
const BUILDS = ["base", "overlays/example", "optional", "overlays/valkey"] as const;

function kustomize(directory: string): ManifestObject[] {
  const kubectl = requireBinary("kubectl", "it ships with this machine image; Debian's kubernetes-client also has it");
  const result = Bun.spawnSync([kubectl, "kustomize", join(K8S, directory)], { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`kubectl kustomize ${directory} failed: ${result.stderr.toString()}`);
  return parseManifests(result.stdout.toString(), `kustomize(${directory})`);
}

type Json = Record<string, unknown>;
const at = (value: unknown, ...path: (string | number)[]): unknown =>
  path.reduce<unknown>((node, key) => (node as Record<string | number, unknown> | undefined)?.[key], value);

function find(objects: readonly ManifestObject[], kind: string, name: string): Json {
  const object = objects.find((candidate) => candidate.value.kind === kind && at(candidate.value, "metadata", "name") === name);
  if (!object) throw new Error(`no ${kind}/${name} in the build`);
  return object.value;
}

function matches(selector: unknown, labels: unknown): boolean {
  const wanted = Object.entries((selector ?? {}) as Record<string, string>);
  return wanted.length > 0 && wanted.every(([key, value]) => (labels as Record<string, string>)[key] === value);
}

/** The environment the container gets: envFrom ConfigMaps and Secrets, then env. */
function podEnvironment(objects: readonly ManifestObject[], container: Json): Record<string, string> {
  const env: Record<string, string> = {};
  for (const source of (container.envFrom ?? []) as Json[]) {
    const configMap = at(source, "configMapRef", "name");
    const secret = at(source, "secretRef", "name");
    if (typeof configMap === "string") Object.assign(env, at(find(objects, "ConfigMap", configMap), "data"));
    if (typeof secret === "string") {
      const object = find(objects, "Secret", secret);
      Object.assign(env, object.stringData ?? {});
      for (const [key, value] of Object.entries((object.data ?? {}) as Record<string, string>)) {
        env[key] = Buffer.from(value, "base64").toString();
      }
    }
  }
  for (const variable of (container.env ?? []) as Json[]) env[String(variable.name)] = String(variable.value ?? "");
  return env;
}

/** The operational rules; returns the broken ones (empty = all hold). */
export function checkInvariants(objects: readonly ManifestObject[]): string[] {
  const problems: string[] = [];
  const deployment = find(objects, "Deployment", "turnomatic");
  const config = at(find(objects, "ConfigMap", "turnomatic-config"), "data") as Record<string, string>;
  const pod = at(deployment, "spec", "template", "spec") as Json;
  const podLabels = at(deployment, "spec", "template", "metadata", "labels");
  const container = at(pod, "containers", 0) as Json;
  const probePath = (probe: string) => at(container, probe, "httpGet", "path");
  if (probePath("readinessProbe") !== "/readyz") problems.push("readinessProbe must GET /readyz");
  if (probePath("livenessProbe") !== "/healthz") problems.push("livenessProbe must GET /healthz (never /readyz)");
  if (probePath("startupProbe") !== "/healthz") problems.push("startupProbe must GET /healthz");
  for (const resource of ["cpu", "memory"]) {
    if (at(container, "resources", "requests", resource) === undefined) problems.push(`resources.requests.${resource} missing`);
  }
  const preStop = at(container, "lifecycle", "preStop", "exec", "command") as string[] | undefined;
  const preStopSeconds =
    preStop?.[0] === "sleep" ? Number(preStop[1]) : Number(at(container, "lifecycle", "preStop", "sleep", "seconds"));
  if (!(preStopSeconds > 0)) problems.push("preStop must sleep so endpoints are removed before SIGTERM");
  const drainSeconds =
    (Number(config.TURNOMATIC_DRAIN_DELAY_MS ?? 0) + Number(config.TURNOMATIC_SHUTDOWN_TIMEOUT_MS ?? 10000)) / 1000;
  const grace = Number(pod.terminationGracePeriodSeconds ?? 30);
  if (!(grace > preStopSeconds + drainSeconds)) {
    problems.push(
      `terminationGracePeriodSeconds (${grace}) must exceed preStop (${preStopSeconds}) + drain + shutdown (${drainSeconds})`,
    );
  }
  problems.push(...checkServiceEnvironment(podEnvironment(objects, container), "Deployment turnomatic"));
  if (at(pod, "securityContext", "runAsNonRoot") !== true) problems.push("pod securityContext.runAsNonRoot must be true");
  if (at(container, "securityContext", "readOnlyRootFilesystem") !== true) problems.push("readOnlyRootFilesystem must be true");
  if (at(container, "securityContext", "allowPrivilegeEscalation") !== false)
    problems.push("allowPrivilegeEscalation must be false");

  const service = find(objects, "Service", "turnomatic");
  if (!matches(at(service, "spec", "selector"), podLabels)) problems.push("Service selector does not match the pods");
  const portNames = new Set((container.ports as Json[]).map((port) => port.name));
  for (const port of at(service, "spec", "ports") as Json[]) {
    if (!portNames.has(port.targetPort)) problems.push(`Service targetPort ${String(port.targetPort)} is not a container port`);
  }
  const hpa = find(objects, "HorizontalPodAutoscaler", "turnomatic");
  if (at(hpa, "spec", "scaleTargetRef", "name") !== "turnomatic") problems.push("HPA must target the Deployment");
  if (!(Number(at(hpa, "spec", "minReplicas")) >= 2)) problems.push("HPA minReplicas must be >= 2");
  const pdb = find(objects, "PodDisruptionBudget", "turnomatic");
  if (!matches(at(pdb, "spec", "selector", "matchLabels"), podLabels)) problems.push("PDB selector does not match the pods");

  for (const object of objects.filter((candidate) => candidate.value.kind === "StatefulSet")) {
    const args = (at(object.value, "spec", "template", "spec", "containers", 0, "args") as string[]).join(" ");
    if (!/--appendonly yes/.test(args) || !/--appendfsync always/.test(args))
      problems.push("Redis needs --appendonly yes --appendfsync always");
    if (!/--maxmemory-policy noeviction/.test(args)) problems.push("Redis needs --maxmemory-policy noeviction");
    if (!at(object.value, "spec", "volumeClaimTemplates", 0)) problems.push("Redis needs a PersistentVolumeClaim template");
    const headless = find(objects, "Service", String(at(object.value, "spec", "serviceName")));
    if (at(headless, "spec", "clusterIP") !== "None") problems.push("Redis' serviceName must be a headless Service");
  }
  for (const object of objects) {
    for (const spec of [at(object.value, "spec", "template", "spec")] as (Json | undefined)[]) {
      for (const each of (spec?.containers ?? []) as Json[]) {
        if (!/:[\w.-]+$/.test(String(each.image)) || String(each.image).endsWith(":latest")) {
          problems.push(`${String(each.name)}: image ${String(each.image)} must be pinned to a version`);
        }
      }
    }
    if (object.value.kind === "Secret") {
      for (const [key, value] of Object.entries({ ...(object.value.stringData as Json), ...(object.value.data as Json) })) {
        const text = object.value.stringData ? String(value) : Buffer.from(String(value), "base64").toString();
        if (text !== "" && !text.startsWith("FAKE-"))
          problems.push(`Secret key ${key} holds a value that is not an obvious FAKE- example`);
      }
    }
  }
  return problems;
}

describe("Kubernetes manifests", () => {
  test("every file listed in each kustomization.yaml exists and parses as YAML", () => {
    for (const build of BUILDS) {
      const kustomization = parse(readFileSync(join(K8S, build, "kustomization.yaml"), "utf8")) as Json;
      const files = [
        ...((kustomization.resources as string[]) ?? []),
        ...((kustomization.patches as Json[]) ?? []).map((p) => p.path),
      ];
      for (const file of files.filter((entry): entry is string => typeof entry === "string")) {
        const path = join(K8S, build, file);
        expect(existsSync(path)).toBe(true);
        if (!path.endsWith(".yaml")) continue;
        expect(parseManifests(readFileSync(path, "utf8"), path).length).toBeGreaterThan(0);
      }
    }
  });

  for (const build of BUILDS) {
    test(`kustomize build of ${build} is valid against the Kubernetes models`, async () => {
      const objects = kustomize(build);
      expect(objects.length).toBeGreaterThanOrEqual(9);
      expect(await validateKubernetesObjects(objects)).toEqual([]);
      expect(checkInvariants(objects)).toEqual([]);
    });
  }

  test("the optional build carries the alert rules as a PrometheusRule, equal to deploy/prometheus/turnomatic-rules.yml", () => {
    const rule = find(kustomize("optional"), "PrometheusRule", "turnomatic");
    const rules = parse(readFileSync(join(REPO, "deploy/prometheus/turnomatic-rules.yml"), "utf8")) as Json;
    expect(at(rule, "spec", "groups")).toEqual(rules.groups);
    // The file is the generator's output (regenerate: bun test/integration/deploy/prometheus-rule.ts > ...).
    expect(readFileSync(join(K8S, "optional/prometheus-rule.yaml"), "utf8")).toBe(renderPrometheusRule());
  });

  test("the valkey overlay runs Valkey with the same durability flags and probes that exist in its image", () => {
    const redis = find(kustomize("overlays/valkey"), "StatefulSet", "turnomatic-redis");
    const container = at(redis, "spec", "template", "spec", "containers", 0) as Json;
    expect(String(container.image)).toMatch(/^valkey\/valkey:\d+\.\d+/);
    expect((container.args as string[])[0]).toBe("valkey-server");
    expect(at(container, "readinessProbe", "exec", "command", 0)).toBe("valkey-cli");
    expect(at(container, "livenessProbe", "exec", "command", 0)).toBe("valkey-cli");
    const base = find(kustomize("base"), "StatefulSet", "turnomatic-redis");
    expect((container.args as string[]).slice(1)).toEqual(
      (at(base, "spec", "template", "spec", "containers", 0, "args") as string[]).slice(1),
    );
  });

  test("the example overlay routes only /turno publicly and disables nginx's next-upstream retries", () => {
    const ingress = find(kustomize("overlays/example"), "Ingress", "turnomatic");
    expect(at(ingress, "metadata", "annotations", "nginx.ingress.kubernetes.io/proxy-next-upstream")).toBe("off");
    const paths = (at(ingress, "spec", "rules", 0, "http", "paths") as Json[]).map((path) => path.path);
    expect(paths).toEqual(["/turno/"]);
  });

  test("a real redis-server accepts the StatefulSet's arguments and runs with them", async () => {
    const redis = find(kustomize("base"), "StatefulSet", "turnomatic-redis");
    const args = [...(at(redis, "spec", "template", "spec", "containers", 0, "args") as string[])];
    expect(args.shift()).toBe("redis-server");
    args.splice(args.indexOf("--dir"), 2); // the test's own directory instead of the volume
    const server = await startRedis({ args });
    try {
      expect(await server.cli("config", "get", "appendfsync")).toBe("appendfsync\nalways");
      expect(await server.cli("config", "get", "appendonly")).toBe("appendonly\nyes");
      expect(await server.cli("config", "get", "maxmemory-policy")).toBe("maxmemory-policy\nnoeviction");
    } finally {
      await server.stop();
    }
  });

  test("every YAML file under deploy/k8s parses", () => {
    const walk = (directory: string): string[] =>
      readdirSync(directory, { withFileTypes: true }).flatMap((entry) =>
        entry.isDirectory()
          ? walk(join(directory, entry.name))
          : entry.name.endsWith(".yaml")
            ? [join(directory, entry.name)]
            : [],
      );
    const files = walk(K8S);
    expect(files.length).toBeGreaterThanOrEqual(15);
    for (const file of files) expect(() => parseAllYaml(file)).not.toThrow();
  });
});

function parseAllYaml(file: string): void {
  parseManifests(readFileSync(file, "utf8"), file);
}

describe("the Kubernetes validators reject broken manifests", () => {
  const base = () => structuredClone(kustomize("base"));
  const deploymentOf = (objects: ManifestObject[]) => find(objects, "Deployment", "turnomatic");

  test("an unknown field (a typo) is rejected by the known-fields layer", async () => {
    const objects = base();
    const container = at(deploymentOf(objects), "spec", "template", "spec", "containers", 0) as Json;
    container.readinessProbee = container.readinessProbe;
    const problems = await validateKubernetesObjects(objects);
    expect(problems.join("\n")).toContain("readinessProbee");
  });

  test("a wrong type is rejected by the OpenAPI layer", async () => {
    const objects = base();
    (deploymentOf(objects).spec as Json).replicas = "two";
    expect((await validateKubernetesObjects(objects)).join("\n")).toContain("replicas must be integer");
  });

  test("a kind without a schema model is rejected, not skipped", async () => {
    const objects = parseManifests("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "inline");
    expect((await validateKubernetesObjects(objects)).join("\n")).toContain("no schema model");
  });

  test("YAML syntax errors are rejected", () => {
    expect(() => parseManifests("apiVersion: v1\nkind: [ConfigMap\n", "inline")).toThrow(/invalid YAML/);
  });

  test("a misspelled option and an invalid value in the ConfigMap break an invariant", () => {
    const objects = base();
    const data = find(objects, "ConfigMap", "turnomatic-config").data as Json;
    data.TURNOMATIC_DRAIN_DELAY = data.TURNOMATIC_DRAIN_DELAY_MS;
    data.TURNOMATIC_WORKERS = "many";
    const problems = checkInvariants(objects).join("\n");
    expect(problems).toContain("TURNOMATIC_DRAIN_DELAY is not an option");
    expect(problems).toContain("TURNOMATIC_WORKERS must be a whole number");
  });

  test("a grace period shorter than preStop + drain + shutdown breaks an invariant", () => {
    const objects = base();
    (at(deploymentOf(objects), "spec", "template", "spec") as Json).terminationGracePeriodSeconds = 15;
    expect(checkInvariants(objects).join("\n")).toContain("terminationGracePeriodSeconds (15)");
  });

  test("liveness on /readyz, Redis without fsync and a real-looking secret break invariants", () => {
    const objects = base();
    const container = at(deploymentOf(objects), "spec", "template", "spec", "containers", 0) as Json;
    (at(container, "livenessProbe", "httpGet") as Json).path = "/readyz";
    const redis = find(objects, "StatefulSet", "turnomatic-redis");
    const args = at(redis, "spec", "template", "spec", "containers", 0, "args") as string[];
    args[args.indexOf("always")] = "everysec";
    (find(objects, "Secret", "turnomatic-admin").stringData as Json).TURNOMATIC_ADMIN_TOKEN = "s3cr3t-t0ken-of-some-length";
    const problems = checkInvariants(objects).join("\n");
    expect(problems).toContain("livenessProbe");
    expect(problems).toContain("--appendfsync always");
    expect(problems).toContain("FAKE-");
  });
});
