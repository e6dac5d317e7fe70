/**
 * The Dockerfile without a Docker engine: lint + the image rules (dockerfile-validator.ts), the
 * .dockerignore against what COPY needs, and a run of the image's own layout: only what the final
 * stage copies (package.json, src/) in a fresh directory, its ENV, its ENTRYPOINT, its HEALTHCHECK
 * command, then SIGTERM, which must end in a graceful exit 0.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { freePort, waitFor } from "../../../harness/ports.ts";
import { checkDockerfile, checkOciLabels, parseDockerfile } from "./dockerfile-validator.ts";
import { checkServiceEnvironment } from "./service-environment.ts";

const REPO = resolve(import.meta.dir, "../../..");
const BUN = join(REPO, "node_modules/.bin/bun");
const bunVersion = (JSON.parse(readFileSync(join(REPO, "node_modules/bun/package.json"), "utf8")) as { version: string }).version;
const facts = () => parseDockerfile(readFileSync(join(REPO, "Dockerfile"), "utf8"));

/** .dockerignore semantics (last matching pattern wins, `!` re-includes), enough for our patterns. */
function dockerIgnored(path: string, patterns: readonly string[]): boolean {
  let ignored = false;
  for (const line of patterns) {
    const negated = line.startsWith("!");
    const pattern = negated ? line.slice(1) : line;
    if (new Bun.Glob(pattern).match(path)) ignored = !negated;
  }
  return ignored;
}

const ignorePatterns = () =>
  readFileSync(join(REPO, ".dockerignore"), "utf8")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));

describe("Dockerfile", () => {
  test("passes the linter and keeps the image rules", () => {
    expect(checkDockerfile(facts(), bunVersion)).toEqual([]);
  });

  test("carries the OCI image labels, version and licence equal to package.json's", () => {
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string; license: string };
    expect(checkOciLabels(facts(), pkg)).toEqual([]);
    expect(facts().labels["org.opencontainers.image.base.name"]).toBe(`oven/bun:${bunVersion}-slim`);
    // The check can fail: no labels, or a stale version.
    const bare = parseDockerfile("FROM oven/bun:1.4.5-slim\nUSER 1000\n");
    expect(checkOciLabels(bare, pkg).length).toBe(5);
    expect(checkOciLabels(facts(), { ...pkg, version: "9.9.9" }).join("\n")).toContain("package.json says 9.9.9");
  });

  test("its ENV is a valid service configuration", () => {
    expect(checkServiceEnvironment(facts().env, "Dockerfile ENV")).toEqual([]);
  });

  test("its ENTRYPOINT is package.json's start script", () => {
    const start = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { scripts: { start: string } }).scripts.start;
    expect([...(facts().entrypoint ?? []), ...(facts().cmd ?? [])]).toEqual(start.split(" "));
  });

  test(".dockerignore lets in what COPY needs and keeps out local state", () => {
    const patterns = ignorePatterns();
    for (const source of facts().copySources) {
      const probe = source === "src" ? "src/main.ts" : source;
      expect({ source, ignored: dockerIgnored(probe, patterns) }).toEqual({ source, ignored: false });
    }
    for (const local of ["node_modules/ioredis/package.json", "data/turnomatic.db", ".git/HEAD", "test/unit/x.test.ts", ".env"]) {
      expect({ local, ignored: dockerIgnored(local, patterns) }).toEqual({ local, ignored: true });
    }
  });
});

describe("the image layout runs", () => {
  let directory = "";
  let child: ReturnType<typeof Bun.spawn> | undefined;
  afterEach(() => {
    child?.kill("SIGKILL");
    child = undefined;
    if (directory) rmSync(directory, { recursive: true, force: true });
  });

  test("ENTRYPOINT serves, HEALTHCHECK passes (and fails on a dead port), SIGTERM exits 0", async () => {
    const image = facts();
    directory = mkdtempSync(join(tmpdir(), "turnomatic-image-"));
    // Exactly what the final stage copies; node_modules stands in for the deps stage's output.
    cpSync(join(REPO, "package.json"), join(directory, "package.json"));
    cpSync(join(REPO, "src"), join(directory, "src"), { recursive: true });
    symlinkSync(join(REPO, "node_modules"), join(directory, "node_modules"));
    const [port, metricsPort] = [await freePort(), await freePort()];
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      ...image.env,
      PORT: String(port),
      METRICS_PORT: String(metricsPort),
      HOST: "127.0.0.1",
      TURNOMATIC_STORE: `sqlite:${join(directory, "data", "turnomatic.db")}`,
      TURNOMATIC_LOG_LEVEL: "warn",
    };
    const [entry, ...entryArgs] = image.entrypoint!;
    expect(entry).toBe("bun");
    child = Bun.spawn([BUN, ...entryArgs, ...(image.cmd ?? [])], { cwd: directory, env, stdout: "ignore", stderr: "pipe" });
    await waitFor(
      "the image entrypoint to answer /healthz",
      async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok,
      20_000,
    );
    expect(await (await fetch(`http://127.0.0.1:${port}/turno/image`)).json()).toEqual({ id: "image", turno: 1 });

    const [, ...healthArgs] = image.healthcheck!;
    const healthy = Bun.spawnSync([BUN, ...healthArgs], { cwd: directory, env });
    expect(healthy.exitCode).toBe(0);
    const dead = Bun.spawnSync([BUN, ...healthArgs], { cwd: directory, env: { ...env, PORT: String(await freePort()) } });
    expect(dead.exitCode).toBe(1);

    child.kill("SIGTERM");
    expect(await child.exited).toBe(0);
    child = undefined;
  }, 60_000);
});

describe("the Dockerfile checks reject broken files", () => {
  const base = readFileSync(join(REPO, "Dockerfile"), "utf8");

  test("shell-form ENTRYPOINT is refused (signals would go to /bin/sh)", () => {
    const broken = base.replace(/^ENTRYPOINT .*$/m, "ENTRYPOINT bun src/main.ts");
    expect(() => parseDockerfile(broken)).toThrow(/exec form/);
  });

  test("root user, no HEALTHCHECK, an unpinned base and an unknown instruction are reported", () => {
    const broken = base
      .replace(/^USER .*$/m, "USER root")
      .replace(/^HEALTHCHECK[\s\S]*?^\s+CMD .*$/m, "")
      .replace("ARG BUN_VERSION=1.4.5", "ARG BUN_VERSION=latest")
      .replace(/^WORKDIR \/app$/m, "WORKDIRR /app");
    const problems = checkDockerfile(parseDockerfile(broken), bunVersion).join("\n");
    expect(problems).toContain("non-root USER");
    expect(problems).toContain("HEALTHCHECK");
    expect(problems).toContain("pinned to x.y.z");
    expect(problems).toContain("Unknown instruction: WORKDIRR");
  });
});
