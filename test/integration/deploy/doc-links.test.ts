/**
 * Every docs path a tracked file names exists: `docs/….md` mentioned anywhere (manifests, configs,
 * code comments; deploy/k8s/optional/hpa-request-rate.yaml pointed at docs/load-tests.md, which
 * never existed) and every relative Markdown link. Anchors are not checked here.
 */
import { expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, normalize } from "node:path";

const REPO = join(import.meta.dir, "../../..");
const tracked = Bun.spawnSync(["git", "ls-files"], { cwd: REPO, stdout: "pipe" })
  .stdout.toString()
  .split("\n")
  // This file's own examples of broken references are left out.
  .filter(
    (path) =>
      path !== "" &&
      path !== "test/integration/deploy/doc-links.test.ts" &&
      !/\.(png|svg|jpg|db)$|package-lock\.json$|^docs\/scalability\//.test(path),
  );

function brokenReferences(files: readonly string[], read: (path: string) => string): string[] {
  const broken: string[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = read(file);
    } catch {
      continue;
    }
    for (const [path] of text.matchAll(/(?<![\w/.-])docs\/[\w./-]+\.md/g)) {
      if (!existsSync(join(REPO, path))) broken.push(`${file}: ${path}`);
    }
    if (!file.endsWith(".md")) continue;
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (target === undefined || /^(https?:|mailto:|#)/.test(target)) continue;
      const path = normalize(join(dirname(file), target.split("#")[0] as string));
      if (!existsSync(join(REPO, path))) broken.push(`${file}: ${target}`);
    }
  }
  return broken;
}

test("every docs/*.md path and relative Markdown link in the repository exists", () => {
  expect(tracked.length).toBeGreaterThan(50);
  expect(brokenReferences(tracked, (path) => readFileSync(join(REPO, path), "utf8"))).toEqual([]);
});

test("the check finds a broken reference (so it can fail)", () => {
  const texts: Record<string, string> = {
    "deploy/x.yaml": "# measure with the load tests (docs/load-tests.md)",
    "docs/y.md": "see [metrics](reference/metrics.md) and [gone](nowhere.md)",
  };
  expect(brokenReferences(Object.keys(texts), (path) => texts[path] as string)).toEqual([
    "deploy/x.yaml: docs/load-tests.md",
    "docs/y.md: nowhere.md",
  ]);
});
