/**
 * Offline Dockerfile checks: dockerfile-utils' linter (the engine of the VS Code Docker language
 * server: unknown instructions, missing arguments, bad ports, malformed flags) and the rules this
 * project's image must keep, read from dockerfile-ast's parse of the final stage.
 */
import { DockerfileParser } from "dockerfile-ast";
import { validate } from "dockerfile-utils";

export interface DockerfileFacts {
  /** Default values of the ARGs before the first FROM. */
  readonly args: Readonly<Record<string, string>>;
  /** Base images as written (ARG references unresolved) and resolved. */
  readonly bases: readonly { readonly written: string; readonly resolved: string }[];
  /** The final stage's USER, ENV, HEALTHCHECK command, ENTRYPOINT and CMD. */
  readonly user: string | undefined;
  readonly env: Readonly<Record<string, string>>;
  readonly healthcheck: readonly string[] | undefined;
  readonly entrypoint: readonly string[] | undefined;
  readonly cmd: readonly string[] | undefined;
  /** The final stage's LABELs, ARG references resolved with the ARG defaults before the first FROM. */
  readonly labels: Readonly<Record<string, string>>;
  /** Source paths of every COPY without --from. */
  readonly copySources: readonly string[];
  /** The linter's errors and warnings. */
  readonly lint: readonly string[];
}

function execForm(text: string, what: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new Error(`${what} must be in exec form (a JSON array), so signals reach the process; got: ${text}`);
  }
  if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === "string")) {
    throw new Error(`${what} must be a JSON array of strings; got: ${text}`);
  }
  return parsed;
}

/** Parses a Dockerfile into the facts the checks need. Throws on shell-form ENTRYPOINT/CMD/HEALTHCHECK. */
export function parseDockerfile(content: string): DockerfileFacts {
  const dockerfile = DockerfileParser.parse(content);
  const lint = validate(content).map((diagnostic) => `line ${diagnostic.range.start.line + 1}: ${diagnostic.message}`);
  const args: Record<string, string> = {};
  for (const arg of dockerfile.getInitialARGs()) {
    const property = arg.getProperty();
    if (property?.getName()) args[property.getName()] = property.getValue() ?? "";
  }
  const resolveArgs = (text: string) => text.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => args[a ?? b] ?? "");
  const bases = dockerfile.getFROMs().map((from) => {
    const written = from.getArguments()[0]?.getValue() ?? "";
    return { written, resolved: resolveArgs(written) };
  });
  const instructions = dockerfile.getInstructions();
  const lastFrom = instructions.findLastIndex((instruction) => instruction.getKeyword() === "FROM");
  let user: string | undefined;
  let healthcheck: string[] | undefined;
  let entrypoint: string[] | undefined;
  let cmd: string[] | undefined;
  const env: Record<string, string> = {};
  const labels: Record<string, string> = {};
  const copySources: string[] = [];
  instructions.forEach((instruction, index) => {
    const keyword = instruction.getKeyword();
    const text = instruction.getArgumentsContent() ?? "";
    // dockerfile-ast's Copy.getFromFlag() returns null even with --from (0.7.1); the flags list is right.
    const flags = (instruction as unknown as { getFlags?(): { getName(): string }[] }).getFlags?.() ?? [];
    if (keyword === "COPY" && !flags.some((flag) => flag.getName() === "from")) {
      copySources.push(
        ...instruction
          .getArguments()
          .map((argument) => argument.getValue())
          .slice(0, -1),
      );
    }
    if (index < lastFrom) return;
    if (keyword === "USER") user = text.trim();
    if (keyword === "ENV") {
      for (const property of (
        instruction as unknown as { getProperties(): { getName(): string; getValue(): string | null }[] }
      ).getProperties()) {
        env[property.getName()] = property.getValue() ?? "";
      }
    }
    if (keyword === "LABEL") {
      for (const property of (
        instruction as unknown as { getProperties(): { getName(): string; getValue(): string | null }[] }
      ).getProperties()) {
        labels[property.getName()] = resolveArgs(property.getValue() ?? "");
      }
    }
    if (keyword === "ENTRYPOINT") entrypoint = execForm(text, "ENTRYPOINT");
    if (keyword === "CMD") cmd = execForm(text, "CMD");
    if (keyword === "HEALTHCHECK") {
      const match = /\bCMD\s+(.*)$/s.exec(text);
      healthcheck = match ? execForm(match[1]!.trim(), "HEALTHCHECK CMD") : undefined;
    }
  });
  return { args, bases, user, env, labels, healthcheck, entrypoint, cmd, copySources, lint };
}

/** The image rules; returns the broken ones (empty = all hold). */
export function checkDockerfile(facts: DockerfileFacts, bunVersion: string): string[] {
  const problems = [...facts.lint.map((message) => `lint: ${message}`)];
  for (const base of facts.bases) {
    if (!/^oven\/bun:\d+\.\d+\.\d+-(slim|alpine|distroless)$/.test(base.resolved)) {
      problems.push(`base image ${base.written} (${base.resolved}) must be the official oven/bun image pinned to x.y.z`);
    }
    if (!base.resolved.startsWith(`oven/bun:${bunVersion}-`)) {
      problems.push(`base image ${base.resolved} must use Bun ${bunVersion}, the version package.json pins and the tests run`);
    }
  }
  if (facts.user === undefined || /^(root|0)(:|$)/.test(facts.user))
    problems.push(`the final stage must set a non-root USER; got ${facts.user}`);
  else if (!/^\d+(:\d+)?$/.test(facts.user))
    problems.push(`USER must be numeric so runAsNonRoot can verify it; got ${facts.user}`);
  if (facts.healthcheck === undefined) problems.push("the final stage needs a HEALTHCHECK CMD in exec form");
  if (facts.entrypoint === undefined) problems.push("the final stage needs an exec-form ENTRYPOINT");
  return problems;
}

/** The OCI annotations every published image should carry (image-spec annotations.md). */
const OCI_LABELS = ["title", "description", "version", "revision", "licenses"] as const;

/** OCI labels present, and version and licence equal to package.json's; returns the broken rules. */
export function checkOciLabels(facts: DockerfileFacts, pkg: { version: string; license: string }): string[] {
  const problems: string[] = [];
  const label = (name: string) => facts.labels[`org.opencontainers.image.${name}`];
  for (const name of OCI_LABELS) {
    if (!label(name)) problems.push(`the final stage needs LABEL org.opencontainers.image.${name}`);
  }
  if (label("version") !== undefined && label("version") !== pkg.version)
    problems.push(`org.opencontainers.image.version is ${label("version")}, package.json says ${pkg.version}`);
  if (label("licenses") !== undefined && label("licenses") !== pkg.license)
    problems.push(`org.opencontainers.image.licenses is ${label("licenses")}, package.json says ${pkg.license}`);
  return problems;
}
