/** Store URLs, the WAIT default and the forms and combinations the configuration refuses, without any server. */
import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig, waitReplicasOf } from "../../src/config.ts";
import { parseMultiHostUrl } from "../../src/stores/redis-url.ts";
import { parseStoreUrl } from "../../src/stores/store-url.ts";

describe("multi-host Redis URLs", () => {
  test("cluster: host list, default port, credentials, TLS", () => {
    const url = parseMultiHostUrl("rediss+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002", 6379);
    expect(url.tls).toBe(true);
    expect(url.username).toBe("app");
    expect(url.password).toBe("p@ss");
    expect(url.hosts).toEqual([
      { host: "10.0.0.1", port: 7000 },
      { host: "10.0.0.2", port: 6379 },
      { host: "::1", port: 7002 },
    ]);
    expect(parseMultiHostUrl("redis+cluster://h:1?tls=true", 6379).tls).toBe(true);
    expect(parseMultiHostUrl("redis+cluster://h:1", 6379).tls).toBe(false);
  });

  test("sentinel: master name in the path, options in the query", () => {
    const url = parseMultiHostUrl("redis+sentinel://:secret@s1:26379,s2:26380/mymaster?db=2&sentinelPassword=x", 26379);
    expect(url.path).toBe("mymaster");
    expect(url.password).toBe("secret");
    expect(url.username).toBeUndefined();
    expect(url.params.get("db")).toBe("2");
    expect(url.params.get("sentinelPassword")).toBe("x");
    expect(url.hosts.map((h) => h.port)).toEqual([26379, 26380]);
  });

  test("bad hosts fail with a message that shows the form, without the password", () => {
    expect(() => parseMultiHostUrl("redis+cluster://u:topsecret@h1:99999", 6379)).toThrow(ConfigError);
    expect(() => parseMultiHostUrl("redis+cluster://u:topsecret@h1:1,,h2:2", 6379)).toThrow("host:port separated by commas");
    try {
      parseMultiHostUrl("redis+cluster://u:topsecret@h1:x", 6379);
    } catch (error) {
      expect((error as Error).message).not.toContain("topsecret");
    }
  });

  test("the configuration refuses a sentinel URL without master name, a cluster database and WAIT on a cluster", () => {
    const store =
      (url: string, extra: Record<string, string> = {}) =>
      () =>
        loadConfig([], { TURNOMATIC_STORE: url, ...extra });
    expect(store("redis+sentinel://127.0.0.1:1")).toThrow("master name");
    expect(store("redis+sentinel://127.0.0.1:1/m?db=x")).toThrow("db must be a database number");
    expect(store("redis+cluster://127.0.0.1:1/3")).toThrow("database 0");
    expect(store("redis+cluster://127.0.0.1:1", { TURNOMATIC_REDIS_WAIT_REPLICAS: "1" })).toThrow("--redis-wait-replicas");
    expect(store("sqlite:")).toThrow("needs a path");
    expect(store("postgres://h/db")).toThrow("must start with one of");
    expect(store("redis://h:1", { TURNOMATIC_WORKERS: "1" })).not.toThrow();
    expect(store("memory:", { TURNOMATIC_WORKERS: "2" })).toThrow("--workers > 1");
  });

  test("parsed once: the kind, the SQLite path, the Sentinel master and database", () => {
    expect(parseStoreUrl("memory:")).toEqual({ kind: "memory", text: "memory:" });
    expect(parseStoreUrl("sqlite:///var/lib/t.db")).toMatchObject({ kind: "sqlite", path: "/var/lib/t.db" });
    expect(parseStoreUrl("redis://h:1?tls=true")).toMatchObject({ kind: "redis", tls: true });
    expect(parseStoreUrl("rediss+sentinel://s1:1/mymaster?db=2")).toMatchObject({
      kind: "redis-sentinel",
      tls: true,
      masterName: "mymaster",
      db: 2,
    });
    expect(parseStoreUrl("redis+cluster://a:1,b:2")).toMatchObject({ kind: "redis-cluster", tls: false });
  });

  test("--redis-wait-replicas defaults to auto and validates numbers", () => {
    expect(loadConfig([], {}).redisWaitReplicas).toBe("auto");
    expect(loadConfig(["--redis-wait-replicas", "2"], {}).redisWaitReplicas).toBe(2);
    expect(() => loadConfig([], { TURNOMATIC_REDIS_WAIT_REPLICAS: "many" })).toThrow("TURNOMATIC_REDIS_WAIT_REPLICAS");
    const sentinel = loadConfig([], { TURNOMATIC_STORE: "rediss+sentinel://h:1/m" });
    expect(sentinel.store.text).toBe("rediss+sentinel://h:1/m");
    expect(waitReplicasOf(sentinel)).toBe("all");
    expect(waitReplicasOf(loadConfig([], { TURNOMATIC_STORE: "redis://h:1" }))).toBe(0);
    expect(waitReplicasOf(loadConfig(["--redis-wait-replicas", "2"], { TURNOMATIC_STORE: "redis://h:1" }))).toBe(2);
  });
});
