import { expect, test } from "bun:test";
import { join } from "node:path";
import { ERROR_CODES } from "../../src/domain/errors.ts";

test("docs/reference/errors.md lists exactly the codes the service uses, with their statuses", async () => {
  const doc = await Bun.file(join(import.meta.dir, "../../docs/reference/errors.md")).text();
  const documented = new Map<string, number>();
  for (const match of doc.matchAll(/^\| `(TURNO_ERR_[A-Z_]+)` *\| (\d{3}) *\|/gm))
    documented.set(match[1] as string, Number(match[2]));
  const inCode = new Map(Object.entries(ERROR_CODES).map(([code, { status }]) => [code, status as number]));
  expect(documented).toEqual(inCode);
});
