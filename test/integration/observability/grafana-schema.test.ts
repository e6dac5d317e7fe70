/**
 * The dashboard JSON type-checks against @grafana/schema's `Dashboard` (the types Grafana generates
 * from its dashboard schema), as an object literal, so string unions and unknown keys are checked:
 * it failed in two places (`current: {}` on the datasource variable, `definition`, which the schema
 * does not know, on the query variables). A broken copy must fail, so the check can fail.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../../..");
const DASHBOARD = join(ROOT, "deploy/grafana/dashboards/turnomatic.json");
const dir = mkdtempSync(join(tmpdir(), "turnomatic-grafana-schema-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
writeFileSync(
  join(dir, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      strict: true,
      noEmit: true,
      module: "Preserve",
      moduleResolution: "bundler",
      skipLibCheck: true,
      types: [],
    },
    files: ["dashboard.ts"],
  }),
);

function typecheck(json: string): { code: number; output: string } {
  writeFileSync(
    join(dir, "dashboard.ts"),
    `import type { Dashboard } from "@grafana/schema";\nexport const dashboard: Dashboard = ${json};\n`,
  );
  const result = Bun.spawnSync([join(ROOT, "node_modules/.bin/tsc"), "-p", join(dir, "tsconfig.json")], {
    stdout: "pipe",
    stderr: "pipe",
  });
  return { code: result.exitCode, output: `${result.stdout}${result.stderr}`.trim() };
}

describe("grafana dashboard typing", () => {
  test("deploy/grafana/dashboards/turnomatic.json is a @grafana/schema Dashboard", () => {
    expect(typecheck(readFileSync(DASHBOARD, "utf8"))).toEqual({ code: 0, output: "" });
  }, 60_000);

  test("a dashboard with a wrong field type or an unknown key fails the check", () => {
    const broken = JSON.parse(readFileSync(DASHBOARD, "utf8")) as {
      panels: Array<{ gridPos: { h: unknown } }>;
      templating: { list: Array<Record<string, unknown>> };
    };
    (broken.panels[0] as { gridPos: { h: unknown } }).gridPos.h = "8";
    (broken.templating.list[1] as Record<string, unknown>).definition = "label_values(x, job)";
    const result = typecheck(JSON.stringify(broken));
    expect(result.code).not.toBe(0);
    expect(result.output).toContain("definition");
    expect(result.output).toContain("'string' is not assignable to type 'number'");
  }, 60_000);
});
