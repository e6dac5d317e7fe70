/**
 * Offline validation of Kubernetes manifests against the official OpenAPI models, in two layers,
 * because neither is enough alone:
 * 1. kubernetes-models' validators (compiled from the Kubernetes OpenAPI schema): types, required
 *    fields, enums and formats. Kubernetes' schema allows unknown fields, so a typo such as
 *    `readinessProbee` passes this layer, and the API server would drop it silently.
 * 2. TypeScript's excess-property check against the same models' interfaces: every object becomes
 *    an object literal typed as, e.g., `IDeployment`, and `tsc` rejects any field the type lacks,
 *    at any depth.
 * An apiVersion/kind without a model is an error, never a silent pass.
 */
import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseAllDocuments } from "yaml";

const REPO = resolve(import.meta.dir, "../../..");

/** A manifest object with where it came from, for error messages. */
export interface ManifestObject {
  readonly source: string;
  readonly value: Record<string, unknown>;
}

interface ModelClass {
  new (data: unknown): { validate(): void };
}

/** Group-version prefixes that have model packages; anything else fails validation. */
const MODEL_PACKAGES: Readonly<Record<string, string>> = {
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

function modelModule(apiVersion: string, kind: string): string {
  const base = MODEL_PACKAGES[apiVersion] ?? `kubernetes-models/${apiVersion}`;
  return `${base}/${kind}`;
}

/** Parses a multi-document YAML text; YAML syntax errors throw with the source named. */
export function parseManifests(text: string, source: string): ManifestObject[] {
  const objects: ManifestObject[] = [];
  for (const document of parseAllDocuments(text)) {
    if (document.errors.length > 0) {
      throw new Error(`${source}: invalid YAML: ${document.errors.map((error) => error.message).join("; ")}`);
    }
    const value: unknown = document.toJS();
    if (value === null || value === undefined) continue;
    if (typeof value !== "object" || Array.isArray(value)) throw new Error(`${source}: a manifest must be a mapping`);
    objects.push({ source, value: value as Record<string, unknown> });
  }
  return objects;
}

function describe(object: ManifestObject): string {
  const metadata = object.value.metadata as { name?: string } | undefined;
  return `${object.source}: ${String(object.value.kind)}/${metadata?.name ?? "?"}`;
}

async function validateWithModels(objects: readonly ManifestObject[]): Promise<string[]> {
  const problems: string[] = [];
  for (const object of objects) {
    const { apiVersion, kind } = object.value;
    if (typeof apiVersion !== "string" || typeof kind !== "string") {
      problems.push(`${describe(object)}: apiVersion and kind must be strings`);
      continue;
    }
    let Model: ModelClass;
    try {
      const module = (await import(modelModule(apiVersion, kind))) as Record<string, ModelClass>;
      Model = module[kind]!;
      if (typeof Model !== "function") throw new Error(`no export ${kind}`);
    } catch {
      problems.push(`${describe(object)}: no schema model for ${apiVersion} ${kind}; add its model package to MODEL_PACKAGES`);
      continue;
    }
    try {
      new Model(object.value).validate();
    } catch (error) {
      problems.push(`${describe(object)}: ${(error as Error).message}`);
    }
  }
  return problems;
}

/** Layer 2: `tsc` over object literals typed with the models' interfaces (one object per line). */
function validateKnownFields(objects: readonly ManifestObject[]): string[] {
  const lines: string[] = [];
  const declarations: string[] = [];
  objects.forEach((object, index) => {
    const { apiVersion, kind } = object.value as { apiVersion: string; kind: string };
    lines.push(`import type { I${kind} as T${index} } from ${JSON.stringify(modelModule(apiVersion, kind))};`);
    declarations.push(`export const o${index}: T${index} = ${JSON.stringify(object.value)};`);
  });
  const directory = mkdtempSync(join(tmpdir(), "turnomatic-k8s-"));
  try {
    symlinkSync(join(REPO, "node_modules"), join(directory, "node_modules"));
    const file = join(directory, "manifests.ts");
    writeFileSync(file, `${lines.join("\n")}\n${declarations.join("\n")}\n`);
    const result = Bun.spawnSync(
      [
        join(REPO, "node_modules/.bin/tsc"),
        "--noEmit",
        "--strict",
        "--skipLibCheck",
        "--target",
        "esnext",
        "--module",
        "preserve",
        "--moduleResolution",
        "bundler",
        "--types",
        "",
        file,
      ],
      { cwd: directory, stdout: "pipe", stderr: "pipe" },
    );
    if (result.exitCode === 0) return [];
    const output = `${result.stdout.toString()}${result.stderr.toString()}`;
    const problems = output
      .split("\n")
      .filter((line) => line.includes("error TS"))
      .map((line) => {
        const match = /manifests\.ts\((\d+),\d+\): (.*)$/.exec(line);
        const object = match ? objects[Number(match[1]) - 1 - objects.length] : undefined;
        return object ? `${describe(object)}: ${match![2]}` : line;
      });
    return problems.length > 0 ? problems : [`tsc failed: ${output.slice(0, 2000)}`];
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

/** Every problem found in the objects (empty = valid). */
export async function validateKubernetesObjects(objects: readonly ManifestObject[]): Promise<string[]> {
  const problems = await validateWithModels(objects);
  // Layer 2 needs a model for every object; layer 1 already reported the ones without.
  if (problems.some((problem) => problem.includes("no schema model"))) return problems;
  return [...problems, ...validateKnownFields(objects)];
}
