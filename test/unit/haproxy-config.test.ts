import { describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type HaproxyConfigOptions, LB_MODES, renderHaproxyConfig } from "../../scripts/cluster/haproxy-config.ts";
import { requireBinary } from "../../harness/binaries.ts";

const SCRIPT = join(import.meta.dir, "../../scripts/cluster/haproxy-config.ts");

const BASE: HaproxyConfigOptions = {
  servers: [
    { name: "app1", address: "10.200.0.11", port: 7017 },
    { name: "app2", address: "10.200.0.12", port: 7017 },
    { name: "app3", address: "10.200.0.13", port: 7017, disabled: true },
  ],
  bind: "127.0.0.1:18080",
  statsBind: "127.0.0.1:18404",
  statsSocket: "/tmp/haproxy-test.sock",
};

/** Lines without comments, trimmed: what HAProxy reads. */
function directives(config: string): string[] {
  return config
    .split("\n")
    .map((line) => line.replace(/#.*$/, "").trim())
    .filter((line) => line !== "");
}

function haproxyCheck(config: string): { code: number; output: string } {
  const dir = mkdtempSync(join(tmpdir(), "turnomatic-haproxy-"));
  try {
    writeFileSync(join(dir, "haproxy.cfg"), config);
    const check = Bun.spawnSync([requireBinary("haproxy"), "-c", "-f", join(dir, "haproxy.cfg")], {
      stdout: "pipe",
      stderr: "pipe",
    });
    return { code: check.exitCode, output: `${check.stdout}${check.stderr}` };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function runScript(argv: string[]): { code: number; stdout: string; stderr: string } {
  const child = Bun.spawnSync([process.execPath, SCRIPT, ...argv], { stdout: "pipe", stderr: "pipe" });
  return { code: child.exitCode, stdout: child.stdout.toString(), stderr: child.stderr.toString() };
}

describe("deploy/haproxy template", () => {
  const variants: Record<string, HaproxyConfigOptions> = {
    default: BASE,
    keepalive: { ...BASE, lbMode: "keepalive" },
    strict: { ...BASE, lbMode: "strict" },
    "one server, defaults": { servers: [{ name: "app1", address: "10.0.0.1", port: 7017 }] },
    "strict, one server": { servers: [{ name: "app1", address: "10.0.0.1", port: 7017 }], lbMode: "strict" },
    "keepalive, nbthread 1": { ...BASE, threads: 1 },
  };
  for (const [name, options] of Object.entries(variants)) {
    test(`haproxy -c accepts the rendered configuration (${name})`, () => {
      const config = renderHaproxyConfig(options);
      expect(config).not.toContain("{{");
      const { code, output } = haproxyCheck(config);
      expect(code, output).toBe(0);
    });

    test(`retries only failed connects, redispatches, health checks /readyz, exports metrics (${name})`, () => {
      const lines = directives(renderHaproxyConfig(options));
      expect(lines.filter((line) => line.startsWith("retry-on"))).toEqual(["retry-on conn-failure"]);
      expect(lines).toContain("option redispatch 1");
      expect(lines).toContain("option httpchk GET /readyz");
      expect(lines).toContain("http-request use-service prometheus-exporter if { path /metrics }");
    });
  }

  test("server lines, including a disabled slot", () => {
    const lines = directives(renderHaproxyConfig(BASE));
    expect(lines.filter((line) => line.startsWith("server "))).toEqual([
      "server app1 10.200.0.11:7017",
      "server app2 10.200.0.12:7017",
      "server app3 10.200.0.13:7017 disabled",
    ]);
  });

  test("default (keepalive): keep-alive on both sides, server connections reused under http-reuse safe", () => {
    const lines = directives(renderHaproxyConfig(BASE));
    expect(lines).toContain("http-reuse safe");
    expect(lines).not.toContain("option httpclose");
    expect(lines).not.toContain("option http-server-close");
    expect(lines.some((line) => /^option (httpclose|http-server-close|forceclose)\b/.test(line))).toBe(false);
    expect(renderHaproxyConfig(BASE)).toBe(renderHaproxyConfig({ ...BASE, lbMode: "keepalive" }));
  });

  test("strict: one request per client connection and a fresh server connection per request", () => {
    const lines = directives(renderHaproxyConfig({ ...BASE, lbMode: "strict" }));
    expect(lines).toContain("option httpclose");
    expect(lines).toContain("option http-server-close");
  });

  test("bad servers are refused with a message, never rendered (no 127.0.0.1:NaN)", () => {
    const bad = (server: { name: string; address: string; port: number }) => () => renderHaproxyConfig({ servers: [server] });
    expect(bad({ name: "app1", address: "127.0.0.1", port: Number.NaN })).toThrow(/port must be an integer from 1 to 65535/);
    expect(bad({ name: "app1", address: "127.0.0.1", port: 0 })).toThrow(/port must be/);
    expect(bad({ name: "app1", address: "127.0.0.1", port: 70000 })).toThrow(/port must be/);
    expect(bad({ name: "app 1", address: "127.0.0.1", port: 7017 })).toThrow(/server name/);
    expect(bad({ name: "app1", address: "a b", port: 7017 })).toThrow(/server address/);
    expect(() => renderHaproxyConfig({ servers: [] })).toThrow(/at least one/);
    expect(() => renderHaproxyConfig({ ...BASE, threads: 0 })).toThrow(/threads must be/);
    expect(directives(renderHaproxyConfig({ ...BASE, threads: 2 }))).toContain("nbthread 2");
    expect(directives(renderHaproxyConfig(BASE)).some((line) => line.startsWith("nbthread"))).toBe(false);
  });
});

describe("bun scripts/cluster/haproxy-config.ts", () => {
  test("--help prints usage and exits 0, without a stack trace", () => {
    for (const flag of ["--help", "-h"]) {
      const { code, stdout, stderr } = runScript([flag]);
      expect(code).toBe(0);
      expect(stdout).toContain("usage: npx bun scripts/cluster/haproxy-config.ts");
      expect(stdout).toContain("--lb-mode");
      expect(stderr).toBe("");
    }
  });

  test("a bad port is an error that names it (exit 2, usage, no stack trace, nothing on stdout)", () => {
    for (const arg of ["127.0.0.1:x", "127.0.0.1:", "127.0.0.1:99999", "127.0.0.1:0", "nohost"]) {
      const { code, stdout, stderr } = runScript([arg]);
      expect({ arg, code }).toEqual({ arg, code: 2 });
      expect(stdout).toBe("");
      expect(stderr).toMatch(/^haproxy-config: /);
      expect(stderr).toContain("usage:");
      expect(stderr).not.toMatch(/\n\s+at /);
      expect(stderr).not.toContain("NaN");
    }
  });

  test("an unknown option or lb mode is an error with usage; no server is an error", () => {
    expect(runScript(["--frobnicate", "10.0.0.1:7017"]).stderr).toContain("usage:");
    expect(runScript(["--frobnicate", "10.0.0.1:7017"]).code).toBe(2);
    const mode = runScript(["--lb-mode", "loose", "10.0.0.1:7017"]);
    expect(mode.code).toBe(2);
    expect(mode.stderr).toContain("--lb-mode must be keepalive or strict");
    expect(runScript([]).code).toBe(2);
  });

  test("renders every lb mode, which haproxy -c accepts", () => {
    for (const mode of LB_MODES) {
      const { code, stdout } = runScript(["--lb-mode", mode, "--bind", "127.0.0.1:18081", "10.0.0.1:7017", "10.0.0.2:7017"]);
      expect(code).toBe(0);
      expect(stdout).toContain("server app2 10.0.0.2:7017");
      expect(stdout).toContain("bind 127.0.0.1:18081");
      const check = haproxyCheck(stdout);
      expect(check.code, check.output).toBe(0);
    }
  });
});
