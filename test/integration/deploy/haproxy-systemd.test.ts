/**
 * deploy/compose/haproxy.cfg and deploy/systemd/turnomatic.service, checked by their own programs
 * (`haproxy -c`, `systemd-analyze verify`) and for the rules that keep a turn from being issued
 * twice: HAProxy retries only connection failures, redispatches them, and health-checks /readyz.
 */
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { requireBinary } from "../../../harness/binaries.ts";
import { checkServiceEnvironment } from "./service-environment.ts";

const REPO = resolve(import.meta.dir, "../../..");
const HAPROXY_CFG = join(REPO, "deploy/compose/haproxy.cfg");
const UNIT = join(REPO, "deploy/systemd/turnomatic.service");

function withTempFile<T>(name: string, content: string, use: (path: string) => T): T {
  const directory = mkdtempSync(join(tmpdir(), "turnomatic-deploy-"));
  try {
    const path = join(directory, name);
    writeFileSync(path, content);
    return use(path);
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

function haproxyCheck(path: string): { ok: boolean; output: string } {
  const haproxy = requireBinary("haproxy");
  const result = Bun.spawnSync([haproxy, "-c", "-f", path], { stdout: "pipe", stderr: "pipe" });
  return { ok: result.exitCode === 0, output: `${result.stdout}${result.stderr}` };
}

/** The retry and health-check rules; returns the broken ones. */
export function checkHaproxyRules(config: string): string[] {
  const problems: string[] = [];
  const lines = config.split("\n").map((line) => line.replace(/#.*$/, "").trim());
  const retryOn = lines.filter((line) => line.startsWith("retry-on "));
  if (retryOn.length === 0)
    problems.push("retry-on conn-failure must be stated explicitly, so no L7 condition is added by accident");
  for (const line of retryOn) {
    const unsafe = line
      .split(/\s+/)
      .slice(1)
      .filter((condition) => condition !== "conn-failure");
    if (unsafe.length > 0) problems.push(`retry-on ${unsafe.join(" ")} can resend a request that already issued a number`);
  }
  if (!lines.some((line) => /^option redispatch\b/.test(line))) problems.push("option redispatch is missing");
  if (!lines.some((line) => /^http-check send meth GET uri \/readyz\b/.test(line)))
    problems.push("health checks must GET /readyz");
  if (!lines.some((line) => /^(server|server-template|default-server)\b.*\bcheck\b/.test(line)))
    problems.push("servers are not health-checked");
  if (lines.some((line) => /^http-request\s+(redirect|return).*\/turno/.test(line)))
    problems.push("unexpected rewrite of /turno");
  return problems;
}

describe("HAProxy config for compose", () => {
  test("haproxy -c accepts it offline (servers resolve at run time: init-addr none)", () => {
    const { ok, output } = haproxyCheck(HAPROXY_CFG);
    expect(output).toContain("Configuration file is valid");
    expect(ok).toBe(true);
  });

  test("retries only connection failures, redispatches, checks /readyz", () => {
    expect(checkHaproxyRules(readFileSync(HAPROXY_CFG, "utf8"))).toEqual([]);
  });

  test("a syntax error fails haproxy -c, and an L7 retry breaks the rules", () => {
    const config = readFileSync(HAPROXY_CFG, "utf8");
    const broken = config.replace(
      /^ {2}retry-on conn-failure$/m,
      "  retry-on conn-failure empty-response 503\n  balancee leastconn",
    );
    expect(withTempFile("haproxy.cfg", broken, haproxyCheck).ok).toBe(false);
    expect(checkHaproxyRules(broken).join("\n")).toContain("retry-on empty-response 503");
    expect(checkHaproxyRules(config.replace("option redispatch 1", "")).join("\n")).toContain("redispatch");
  });
});

describe("systemd unit", () => {
  // verify checks that ExecStart's program exists: point it at this machine's Bun, nothing else changes.
  const unitWithLocalBun = (text: string) => text.replaceAll("/usr/local/bin/bun", join(REPO, "node_modules/.bin/bun"));
  const verify = (text: string) =>
    withTempFile("turnomatic.service", unitWithLocalBun(text), (path) => {
      const analyze = requireBinary("systemd-analyze", "apt-get install systemd");
      const result = Bun.spawnSync([analyze, "verify", "--man=no", path], { stdout: "pipe", stderr: "pipe" });
      // verify exits 0 on unknown keys and bad values and only warns: any output is a failure.
      return { exitCode: result.exitCode, output: `${result.stdout}${result.stderr}`.trim() };
    });

  test("systemd-analyze verify reports nothing", () => {
    expect(verify(readFileSync(UNIT, "utf8"))).toEqual({ exitCode: 0, output: "" });
  });

  test("stops gracefully: SIGTERM first, SIGKILL only after drain + shutdown", () => {
    const unit = readFileSync(UNIT, "utf8");
    const value = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(unit)?.[1];
    expect(value("KillSignal")).toBe("SIGTERM");
    const drainMs = Number(/TURNOMATIC_DRAIN_DELAY_MS=(\d+)/.exec(unit)?.[1] ?? 0);
    const shutdownMs = Number(/TURNOMATIC_SHUTDOWN_TIMEOUT_MS=(\d+)/.exec(unit)?.[1] ?? 10000);
    expect(Number(value("TimeoutStopSec"))).toBeGreaterThan((drainMs + shutdownMs) / 1000);
    expect(value("ExecStart")).toBe("/usr/local/bin/bun --max-http-header-size=16384 src/main.ts");
    expect(value("RestartPreventExitStatus")).toBe("2");
  });

  test("its Environment= lines are a valid service configuration", () => {
    const unit = readFileSync(UNIT, "utf8");
    const env = Object.fromEntries([...unit.matchAll(/^Environment=([A-Z_]+)=(.*)$/gm)].map((match) => [match[1]!, match[2]!]));
    expect(Object.keys(env).length).toBeGreaterThanOrEqual(3);
    expect(checkServiceEnvironment(env, "turnomatic.service")).toEqual([]);
    expect(checkServiceEnvironment({ ...env, TURNOMATIC_STORE: "postgres://x" }, "broken").join("\n")).toContain(
      "TURNOMATIC_STORE must start with",
    );
  });

  test("a misspelled key or a bad value is reported", () => {
    const unit = readFileSync(UNIT, "utf8");
    expect(verify(unit.replace("KillMode=mixed", "KillModee=mixed")).output).toContain("Unknown key");
    expect(verify(unit.replace("TimeoutStopSec=30", "TimeoutStopSec=half-a-minute")).output).toContain("Failed to parse");
  });
});
