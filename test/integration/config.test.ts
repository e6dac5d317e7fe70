import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { ConfigError, helpText, loadConfig, OPTIONS } from "../../src/config.ts";

const MAIN = join(import.meta.dir, "../../src/main.ts");

describe("configuration", () => {
  test("defaults match the spec", () => {
    const config = loadConfig([], {});
    expect(config).toMatchObject({ port: 7017, host: "0.0.0.0", metricsPort: 9464 });
    expect(config.store).toEqual({ kind: "sqlite", text: "sqlite:./data/turnomatic.db", path: "./data/turnomatic.db" });
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

test("the README's configuration table lists every option with its flag and default", async () => {
  const readme = await Bun.file(join(import.meta.dir, "../../README.md")).text();
  const rows = new Map<string, string[]>();
  for (const line of readme.split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    const variable = /^`([A-Z_]+)`$/.exec(cells[1] ?? "")?.[1];
    if (variable !== undefined) rows.set(variable, cells.slice(2, 4));
  }
  const wrong = OPTIONS.flatMap((option) => {
    const row = rows.get(option.env);
    if (row === undefined) return [`${option.env}: no row`];
    const [flag, fallback] = row;
    const problems: string[] = [];
    if (flag !== `\`--${option.flag}\``) problems.push(`${option.env}: flag ${flag}, expected --${option.flag}`);
    // A default is written as code; an unset one as words ("unset", or what the service then does).
    const expected = option.fallback === "" ? !fallback?.startsWith("`") : fallback === `\`${option.fallback}\``;
    if (!expected) problems.push(`${option.env}: default ${fallback}, the option table says '${option.fallback}'`);
    return problems;
  });
  expect(wrong).toEqual([]);
  expect([...rows.keys()].filter((variable) => !OPTIONS.some((option) => option.env === variable))).toEqual([]);
});
