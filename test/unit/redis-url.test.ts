/** Multi-host Redis URLs, the WAIT default and the forms createStore refuses, without any server. */
import { describe, expect, test } from "bun:test";
import { ConfigError, loadConfig } from "../../src/config.ts";
import { createStore } from "../../src/stores/create-store.ts";
import { parseMultiHostUrl } from "../../src/stores/redis-url.ts";

const settings = { redisKeyPrefix: "t:", commandTimeoutMs: 1000, redisWaitTimeoutMs: 500 } as const;

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

  test("createStore refuses a sentinel URL without master name and WAIT on a cluster", () => {
    expect(() => createStore({ ...settings, url: "redis+sentinel://127.0.0.1:1", redisWaitReplicas: "auto" })).toThrow(
      "master name",
    );
    expect(() => createStore({ ...settings, url: "redis+cluster://127.0.0.1:1", redisWaitReplicas: 1 })).toThrow(
      "--redis-wait-replicas",
    );
    expect(() => createStore({ ...settings, url: "redis+cluster://127.0.0.1:1/3", redisWaitReplicas: 0 })).toThrow("database 0");
  });

  test("--redis-wait-replicas defaults to auto and validates numbers", () => {
    expect(loadConfig([], {}).redisWaitReplicas).toBe("auto");
    expect(loadConfig(["--redis-wait-replicas", "2"], {}).redisWaitReplicas).toBe(2);
    expect(() => loadConfig([], { TURNOMATIC_REDIS_WAIT_REPLICAS: "many" })).toThrow("TURNOMATIC_REDIS_WAIT_REPLICAS");
    expect(loadConfig([], { TURNOMATIC_STORE: "rediss+sentinel://h:1/m" }).store).toBe("rediss+sentinel://h:1/m");
  });
});
