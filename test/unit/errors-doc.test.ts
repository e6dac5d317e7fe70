import { expect, test } from "bun:test";
import { join } from "node:path";
import { ERROR_CODES, START_ERROR_CODES } from "../../src/domain/errors.ts";

test("docs/reference/errors.md lists exactly the codes the service uses, with their statuses", async () => {
  const doc = await Bun.file(join(import.meta.dir, "../../docs/reference/errors.md")).text();
  const documented = new Map<string, number>();
  for (const match of doc.matchAll(/^\| `(TURNO_ERR_[A-Z_]+)` *\| (\d{3}) *\|/gm))
    documented.set(match[1] as string, Number(match[2]));
  const inCode = new Map(Object.entries(ERROR_CODES).map(([code, { status }]) => [code, status as number]));
  expect(documented).toEqual(inCode);
});

test("docs/reference/errors.md names every start-up error code, and every TURNO_ERR_ code it names exists", async () => {
  const doc = await Bun.file(join(import.meta.dir, "../../docs/reference/errors.md")).text();
  for (const code of Object.keys(START_ERROR_CODES)) expect(doc).toContain(`\`${code}\``);
  const known = new Set([...Object.keys(ERROR_CODES), ...Object.keys(START_ERROR_CODES)]);
  const named = new Set([...doc.matchAll(/TURNO_ERR_[A-Z_]+[A-Z]/g)].map((match) => match[0]));
  expect([...named].filter((code) => !known.has(code))).toEqual([]);
});
