/**
 * The classifier's table (src/stores/store-errors.ts): each cause an operator can meet, named in
 * the service's words, never with client-library internals or a double period. The integration
 * tests (redis-tls.test.ts, redis-tls-topologies.test.ts) produce these errors on real servers.
 */
import { expect, test } from "bun:test";
import { StoreUnavailableError } from "../../src/domain/errors.ts";
import { classifyStoreError, deniedCommand } from "../../src/stores/store-errors.ts";

function nodeError(code: string, message: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), { code, ...extra });
}

test.each([
  [nodeError("SELF_SIGNED_CERT_IN_CHAIN", "self signed certificate in certificate chain"), "tls-untrusted", "--redis-tls-ca"],
  [nodeError("UNABLE_TO_VERIFY_LEAF_SIGNATURE", "unable to verify the first certificate"), "tls-untrusted", "--redis-tls-ca"],
  [nodeError("CERT_HAS_EXPIRED", "certificate has expired"), "tls-expired", "not valid now"],
  [
    nodeError("ERR_TLS_CERT_ALTNAME_INVALID", "Hostname/IP does not match certificate's altnames"),
    "tls-hostname",
    "does not name the host",
  ],
  [new Error("WRONGPASS invalid username-password pair or user is disabled."), "auth", "user:password"],
  [new Error("NOAUTH Authentication required."), "auth", "NOAUTH"],
  [new Error("NOPERM this user has no permissions to run the 'evalsha' command"), "acl", "EVALSHA"],
  [new Error("NOPERM this user has no permissions to access one of the keys used as arguments"), "acl", "keys"],
  [
    nodeError("ECONNREFUSED", "connect ECONNREFUSED 127.0.0.1:6379", { address: "127.0.0.1", port: 6379 }),
    "refused",
    "127.0.0.1:6379",
  ],
  [nodeError("ETIMEDOUT", "connect ETIMEDOUT"), "timeout", "timed out"],
  [new Error("Command timed out"), "timeout", "--deadline-ms"],
  [nodeError("ENOTFOUND", "getaddrinfo ENOTFOUND redis.invalid"), "dns", "does not resolve"],
  [new Error("LOADING Redis is loading the dataset in memory"), "loading", "loading"],
  [
    new Error('Reached the max retries per request limit (which is 1). Refer to "maxRetriesPerRequest" option for details.'),
    "not-connected",
    "not connected",
  ],
] as const)("classifies case %#", (error, kind, words) => {
  const cause = classifyStoreError(error);
  expect(cause?.kind).toBe(kind);
  expect(cause?.message).toContain(words);
  expect(cause?.message).not.toMatch(/\.$/);
  expect(cause?.message).not.toContain("maxRetriesPerRequest");
  expect(new StoreUnavailableError(cause?.message ?? "").message).not.toContain("..");
});

test("a cluster's all-failed error is classified by its last node error", () => {
  const error = Object.assign(new Error("Failed to refresh slots cache."), {
    lastNodeError: nodeError("ECONNREFUSED", "connect ECONNREFUSED"),
  });
  expect(classifyStoreError(error)?.kind).toBe("refused");
});

test("errors that are not about reaching Redis are left alone", () => {
  expect(classifyStoreError(new Error("ERR Error running script (call to f_1234): @user_script:1: boom"))).toBeUndefined();
  expect(classifyStoreError("text")).toBeUndefined();
  expect(deniedCommand("NOPERM this user has no permissions to run the 'config|get' command")).toBe("CONFIG GET");
});

test("a quoted detail that ends with a period does not make a double period", () => {
  expect(new StoreUnavailableError("Connection is closed.").message).toBe(
    "The counter store is unavailable: Connection is closed. Retry later.",
  );
});
