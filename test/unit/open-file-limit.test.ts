import { expect, test } from "bun:test";
import { openFileLimit } from "../../src/http/open-file-limit.ts";

const limits = (soft: string) => `Limit                     Soft Limit           Hard Limit           Units
Max cpu time              unlimited            unlimited            seconds
Max open files            ${soft.padEnd(20)} 1048576              files
Max locked memory         8388608              8388608              bytes
`;

test("the soft open-file limit is read from /proc/self/limits", () => {
  expect(openFileLimit(limits("1024"))).toBe(1024);
  expect(openFileLimit(limits("unlimited"))).toBe(Number.POSITIVE_INFINITY);
  expect(openFileLimit("no such line")).toBeUndefined();
  expect(openFileLimit()).toBeGreaterThan(0); // this process's, on Linux
});
