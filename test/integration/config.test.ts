import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigError, helpText, loadConfig, OPTIONS } from "../../src/config.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

describe("configuration", () => {
  test("defaults match the spec", () => {
    const config = loadConfig([], {});
    expect(config).toMatchObject({ port: 7017, host: "0.0.0.0", store: "sqlite:./data/turnomatic.db", metricsPort: 9464 });
    expect(config.adminToken).toBeUndefined();
  });

  test("flags win over environment variables", () => {
    expect(loadConfig(["--port", "8000"], { PORT: "9000" }).port).toBe(8000);
    expect(loadConfig([], { PORT: "9000" }).port).toBe(9000);
  });

  test("bad values fail with a message naming the option", () => {
    const cases: Array<[string[], Record<string, string>, string]> = [
      [[], { PORT: "http" }, "PORT"],
      [["--port", "70000"], {}, "--port"],
      [[], { TURNOMATIC_STORE: "mysql://x" }, "TURNOMATIC_STORE"],
      [[], { TURNOMATIC_ADMIN_TOKEN: "short" }, "TURNOMATIC_ADMIN_TOKEN"],
      [[], { TURNOMATIC_DEADLINE_MS: "0" }, "TURNOMATIC_DEADLINE_MS"],
      [[], { METRICS_PORT: "7017" }, "METRICS_PORT"],
      [["--no-such-flag"], {}, "--help"],
    ];
    for (const [argv, env, name] of cases) {
      expect(() => loadConfig(argv, env)).toThrow(ConfigError);
      expect(() => loadConfig(argv, env)).toThrow(name);
    }
  });

  test("--help lists every flag and environment variable", () => {
    const text = helpText();
    for (const option of OPTIONS) {
      expect(text).toContain(`--${option.flag}`);
      expect(text).toContain(option.env);
    }
  });

  test("the process exits 2 with the option's name on bad config, 0 on --help", async () => {
    const bad = Bun.spawnSync([process.execPath, MAIN], { env: { ...process.env, PORT: "nope" }, stderr: "pipe" });
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr.toString()).toContain("PORT");
    const help = Bun.spawnSync([process.execPath, MAIN, "--help"], { stdout: "pipe" });
    expect(help.exitCode).toBe(0);
    expect(help.stdout.toString()).toContain("TURNOMATIC_STORE");
  });
});

test("the README's configuration table lists every option", async () => {
  const readme = await Bun.file(join(import.meta.dir, "../../README.md")).text();
  const missing = OPTIONS.filter((option) => !readme.includes(`\`${option.env}\``) || !readme.includes(`\`--${option.flag}\``));
  expect(missing.map((option) => option.env)).toEqual([]);
});
